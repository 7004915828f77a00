"""The GGUF model pool: lazy loading, one shared instance per model, LRU eviction."""

from .errors import (
    ModelBudgetError,
    ModelCorruptError,
    ModelError,
    ModelMissingError,
    PoolClosedError,
    UnknownModelError,
)
from .pool import LoadedModel, ModelPool

__all__ = [
    "LoadedModel",
    "ModelBudgetError",
    "ModelCorruptError",
    "ModelError",
    "ModelMissingError",
    "ModelPool",
    "PoolClosedError",
    "UnknownModelError",
]
