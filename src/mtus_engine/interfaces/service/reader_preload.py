"""Imported once by the letter readers' forkserver (service/isolation.py): what the letter parser
loads on first use (the rulebook's vocabulary) is loaded here, so each reader process forked from
it, including one that replaces a killed reader, starts warm."""

from ...letters import letter
from . import documents  # noqa: F401

letter._rulebook()
letter._drug_tables()
