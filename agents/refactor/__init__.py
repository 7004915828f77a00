"""Refactors as code actions: the refactor agent, its actions, extract function, text edits."""
