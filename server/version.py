"""memlsp's version, declared once in pyproject.toml and read from the installed package.

A module of its own so the CLI can show it without importing the language server.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed_version() -> str:
    try:
        return version("memlsp")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


VERSION = installed_version()
