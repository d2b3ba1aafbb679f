"""The reviewer's workbench: an HTTP service (FastAPI), CDS Hooks with FHIR R4 input, a web page and a
decision log, all over the same API as the ``mtus`` command. Imported only by ``mtus serve`` and
``mtus decisions``: the other commands never load FastAPI."""
