"""The model pool generator tests complete with: the shipped catalogue, the 0.5B FIM model
assembled from its packages."""

from __future__ import annotations

from pathlib import Path

from memlsp.config import Config, PoolConfig, load_config
from memlsp.models import ModelPool
from memlsp.models.assembly import assemble

FIM = "qwen2.5-coder-0.5b"


def fim_pool() -> ModelPool:
    """A pool with the FIM model ready to load (not the developer's config); close it when
    done."""
    config = Config() if Config().models else load_config(None, user_file=Path("/no.yaml")).config
    assemble(config.models[FIM])
    return ModelPool(config.models, PoolConfig())
