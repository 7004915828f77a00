"""memlsp's configuration: the typed schema and the layered, validating loader.

``load_config()`` never raises for a bad file: it returns the config built from every valid
setting plus the issues found, for the caller to show (log, ``window/showMessage``, CLI).
"""

from memlsp.config.loader import (
    CATALOGUE_PATH,
    INIT_OPTIONS_SOURCE,
    WORKSPACE_FILE_NAME,
    ConfigIssue,
    LoadedConfig,
    config_to_dict,
    load_config,
    user_config_path,
)
from memlsp.config.schema import (
    AgentsConfig,
    Config,
    FimTokens,
    GeneratorConfig,
    MemoryConfig,
    ModelSource,
    ModelSpec,
    PoolConfig,
    QualityConfig,
    SecurityConfig,
    ServerConfig,
)

__all__ = [
    "CATALOGUE_PATH",
    "INIT_OPTIONS_SOURCE",
    "WORKSPACE_FILE_NAME",
    "AgentsConfig",
    "Config",
    "ConfigIssue",
    "FimTokens",
    "GeneratorConfig",
    "LoadedConfig",
    "MemoryConfig",
    "ModelSource",
    "ModelSpec",
    "PoolConfig",
    "QualityConfig",
    "SecurityConfig",
    "ServerConfig",
    "config_to_dict",
    "load_config",
    "user_config_path",
]
