"""What users touch: the mtus command, the text and report renderers, and the HTTP service."""
