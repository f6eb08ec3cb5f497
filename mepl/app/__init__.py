"""Use cases: what an operator's action does, independent of the CLI that asks for it."""
