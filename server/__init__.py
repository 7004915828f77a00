"""The pygls language server and the command line."""
