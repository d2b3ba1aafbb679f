"""Evaluating a case: the case model, derived facts, the engine over durable_rules, the
determination, what-if and batch."""
