"""`memlsp demo`: a real LSP client driving the real server on a sample workspace."""
