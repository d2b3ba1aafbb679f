"""The rulebook: loading and linting rules/, compiling it for durable_rules, the phrasebook,
and its checks (rule tests, coverage, regression against real letters)."""
