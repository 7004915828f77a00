"""The `memlsp` command line: serve, index, complete, doctor, status, models, demo."""
