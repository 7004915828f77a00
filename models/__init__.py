"""The GGUF model pool: lazy loading, one shared instance per model, LRU eviction."""

from memlsp.models.errors import (
    ModelBudgetError,
    ModelCorruptError,
    ModelError,
    ModelMissingError,
    PoolClosedError,
    UnknownModelError,
)
from memlsp.models.pool import LoadedModel, ModelPool

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
