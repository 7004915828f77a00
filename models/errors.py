"""Errors the model pool raises. Each message names the model, the file and the fix."""

from __future__ import annotations


class ModelError(Exception):
    """Base class: a model could not be served. The pool keeps serving other models."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(message)
        self.model = model


class UnknownModelError(ModelError):
    """The name is not in the catalogue."""


class ModelMissingError(ModelError):
    """The GGUF file is absent and cannot be assembled from installed packages."""


class ModelCorruptError(ModelError):
    """The GGUF file exists but is truncated, fails its checksum or does not load."""


class ModelBudgetError(ModelError):
    """The model does not fit the pool's memory budget (alone, or beside busy models)."""


class PoolClosedError(ModelError):
    """The pool was closed (server shutting down)."""
