"""The language server: the pygls server, the session, one module per LSP feature."""
