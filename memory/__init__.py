"""Workspace memory: MemOS textual memory on Qdrant."""
