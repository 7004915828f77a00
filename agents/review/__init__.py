"""The review on save: the quality agent, the tool executor (linters), quick fixes."""
