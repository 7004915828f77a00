"""Agents: the generator (fill-in-the-middle), quality review, tool executor."""
