"""Load the configuration from its layers, validating leaf by leaf.

Layers, lowest first: built-in defaults and the model catalogue (``models.yaml``) < the user's
file (``$XDG_CONFIG_HOME/memlsp/config.yaml``) < the workspace's ``.memlsp.yaml`` < the client's
``initializationOptions`` < any extra layers (``workspace/configuration`` results). Each layer is
applied onto the config built from the layers below it, so mappings merge key by key (models
per model, per field) and a bad value keeps the lower layers' value: one bad setting never stops
the rest from loading, and every problem comes back as a :class:`ConfigIssue` that names the file.

Only the defaults and the user's file are trusted. A cloned repository can carry ``.memlsp.yaml``
(and editors pass workspace settings on as options), so those layers may not change where models
come from or where memory is sent unless the user's file allows it (``security:``). Every file is
read as a regular file of bounded size that never blocks, the workspace's only where its links
lead inside the workspace (``safe_read``): git stores symlinks, to ``/dev/stdin`` as well.

A ``null`` on a setting that cannot be null means "not set in this layer" (an empty YAML key, or an
editor setting left at its default), so it keeps the lower layers' value without an issue.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from memlsp.config.refactor_schema import RefactorAction
from memlsp.config.safe_read import RefusedFile, read_regular_file
from memlsp.config.schema import (
    AgentsConfig,
    Config,
    MemoryConfig,
    ModelSpec,
    SecurityConfig,
    ServerConfig,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    _D = TypeVar("_D", bound=DataclassInstance)

# The C parser is several times faster; fall back to the pure-Python one where libyaml is missing.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

CATALOGUE_PATH = Path(__file__).with_name("models.yaml")
WORKSPACE_FILE_NAME = ".memlsp.yaml"
# Far above any real config; a planted file may be endless (a link to /dev/zero) or huge.
CONFIG_MAX_BYTES = 1 << 20
INIT_OPTIONS_SOURCE = "initializationOptions"


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found while loading: where (``source``, dotted ``key``) and what was done."""

    source: str
    key: str
    message: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.source, self.key, self.message) if part)


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    issues: tuple[ConfigIssue, ...] = ()
    sources: tuple[str, ...] = ()  # the layers applied, lowest first


def user_config_path() -> Path:
    """``$XDG_CONFIG_HOME/memlsp/config.yaml``, by default ``~/.config/memlsp/config.yaml``."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "memlsp" / "config.yaml"


def load_config(
    workspace_root: Path | None = None,
    init_options: Mapping[str, Any] | None = None,
    *,
    user_file: Path | None = None,
    extra_layers: Sequence[tuple[str, Mapping[str, Any] | None]] = (),
) -> LoadedConfig:
    """Build the config from every layer; never raises for a bad or missing file.

    ``user_file`` replaces the XDG lookup (tests); ``extra_layers`` are ``(name, mapping)`` pairs
    applied last, in order, as untrusted as the workspace file. A ``None`` layer is skipped.
    """
    builder = _Builder()
    catalogue = _read_yaml(CATALOGUE_PATH, builder.issues)
    if catalogue is not None:
        builder.apply(str(CATALOGUE_PATH), {"models": catalogue}, trusted=True)
    builder.apply_file(user_file if user_file is not None else user_config_path(), trusted=True)
    if workspace_root is not None:
        root = Path(workspace_root)
        builder.apply_file(root / WORKSPACE_FILE_NAME, trusted=False, inside=root)
    if init_options is not None:
        builder.apply(INIT_OPTIONS_SOURCE, init_options, trusted=False)
    for name, layer in extra_layers:
        if layer is not None:
            builder.apply(name, layer, trusted=False)
    return LoadedConfig(builder.config, tuple(builder.issues), tuple(builder.sources))


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as plain dicts, lists and scalars (JSON- and YAML-friendly)."""
    plain = _plain(config)
    assert isinstance(plain, dict)
    return plain


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- layers -----------------------------------------------------------------------------------


class _Builder:
    """Applies layers one by one onto the config so far, collecting issues and sources."""

    def __init__(self) -> None:
        self.config = Config()
        self.issues: list[ConfigIssue] = []
        self.sources: list[str] = []

    def apply_file(self, path: Path, *, trusted: bool, inside: Path | None = None) -> None:
        data = _read_yaml(path, self.issues, inside)
        if data is not None:
            self.apply(str(path), data, trusted=trusted)

    def apply(self, source: str, data: Any, *, trusted: bool) -> None:
        if not isinstance(data, Mapping):
            self.issues.append(
                ConfigIssue(source, "", f"{_show(data)} is not a mapping of settings (ignored)")
            )
            return
        locked = frozenset() if trusted else _locked_fields(self.config.security)
        self.config = _Walker(source, self.issues, locked).section(data, self.config, "")
        self.sources.append(source)


def _read_yaml(
    path: Path, issues: list[ConfigIssue], inside: Path | None = None
) -> Mapping[Any, Any] | None:
    """The file's top-level mapping; None (and an issue, unless it is missing) to skip it.

    Read as a regular file of bounded size that never blocks (a planted FIFO, device or link);
    with ``inside``, only where its links lead inside that folder.
    """
    try:
        text = read_regular_file(path, max_bytes=CONFIG_MAX_BYTES, inside=inside).decode("utf-8")
    except FileNotFoundError:
        return None
    except RefusedFile as exc:
        issues.append(ConfigIssue(str(path), "", f"{exc.strerror} (file ignored)"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        issues.append(ConfigIssue(str(path), "", f"cannot be read: {reason} (file ignored)"))
        return None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue(str(path), "", f"{_yaml_error(exc)} (file ignored)"))
        return None
    if data is None:  # an empty file (or only comments)
        return {}
    if not isinstance(data, Mapping):
        message = f"the top level is {_kind(data)}, not a mapping of settings (file ignored)"
        issues.append(ConfigIssue(str(path), "", message))
        return None
    return data


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"invalid YAML{where}: {problem}"


# Fields an untrusted layer may set only where the user's file sets this security flag (None:
# never): they decide which code is imported, which files are loaded, where the workspace goes.
_GUARDED: dict[tuple[type, str], str | None] = {
    (Config, "security"): None,
    (ModelSpec, "source"): "allow_workspace_models",
    (MemoryConfig, "url"): "allow_workspace_memory_url",
    (MemoryConfig, "api_key_env"): "allow_workspace_memory_url",
    # Where we write: a cloned repo must not make us append logs to, or build a store in,
    # arbitrary files.
    (MemoryConfig, "path"): None,
    (ServerConfig, "log_file"): None,
    # Safeguards against hostile input: a cloned repository must not be able to lift them.
    (ServerConfig, "max_message_bytes"): None,
    (ServerConfig, "max_document_bytes"): None,
    # What we execute: the tool allow-list is the user's alone (the whole section, so a workspace
    # cannot re-enable a tool the user turned off either).
    (AgentsConfig, "tools"): None,
    # What we ask the model: an action is applied on one click, so a workspace must not be able
    # to reword "Add docstring" into "...and add this import". Titles, languages etc. stay open.
    (RefactorAction, "prompt"): "allow_workspace_prompts",
}


def _locked_fields(security: SecurityConfig) -> frozenset[tuple[type, str]]:
    return frozenset(
        where for where, flag in _GUARDED.items() if flag is None or not getattr(security, flag)
    )


def _locked_message(where: tuple[type, str]) -> str:
    flag = _GUARDED[where]
    unless = f", unless it sets security.{flag}: true" if flag else ""
    return f"may only be set in the user config file{unless} (ignored)"


# -- validation -------------------------------------------------------------------------------


class _Invalid(Exception):
    """A value that breaks its field's constraints; the message names the value and why."""


@dataclass(frozen=True)
class _Field:
    hint: Any
    meta: Mapping[str, Any]

    @property
    def nullable(self) -> bool:
        return type(None) in typing.get_args(self.hint)


@cache
def _fields(cls: type) -> dict[str, _Field]:
    hints = typing.get_type_hints(cls)
    return {f.name: _Field(hints[f.name], f.metadata) for f in dataclasses.fields(cls)}


class _Walker:
    """Applies one layer's mapping onto a dataclass, reporting each bad key once."""

    def __init__(
        self, source: str, issues: list[ConfigIssue], locked: frozenset[tuple[type, str]]
    ) -> None:
        self.source = source
        self.issues = issues
        self.locked = locked  # (dataclass, field) pairs this layer may not change

    def issue(self, key: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.source, key, message))

    def section(self, raw: Mapping[Any, Any], current: _D, path: str) -> _D:
        fields = _fields(type(current))
        changes: dict[str, Any] = {}
        for key, value in raw.items():
            where = _join(path, key)
            spec = fields.get(key) if isinstance(key, str) else None
            if spec is None:
                self.unknown(where, key, fields)
            elif (type(current), key) in self.locked:
                if value is not None:
                    self.issue(where, _locked_message((type(current), key)))
            elif value is not None or spec.nullable:
                changes[key] = self.value(value, getattr(current, key), spec, where)
        return dataclasses.replace(current, **changes) if changes else current

    def value(self, value: Any, current: Any, spec: _Field, path: str) -> Any:
        hint = spec.hint
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self.nested(value, current, path)
        if typing.get_origin(hint) is dict:
            return self.entries(value, current, typing.get_args(hint)[1], path)
        if spec.nullable:  # only ``SomeDataclass | None`` in the schema
            if value is None:
                return None
            cls = next(a for a in typing.get_args(hint) if a is not type(None))
            return self.nested(value, current if current is not None else cls(), path)
        try:
            return _check_leaf(hint, value, spec.meta)
        except _Invalid as exc:
            self.issue(path, f"{exc} (using {_show(current)})")
            return current

    def nested(self, value: Any, current: _D, path: str) -> _D:
        if isinstance(value, Mapping):
            return self.section(value, current, path)
        keys = ", ".join(_fields(type(current)))
        self.issue(path, f"{_show(value)} is not a mapping; valid keys: {keys} (ignored)")
        return current

    def entries(self, value: Any, current: dict[str, Any], cls: type, path: str) -> Any:
        """A ``name -> dataclass`` mapping (the models): entries merge per name, per field."""
        if not isinstance(value, Mapping):
            self.issue(path, f"{_show(value)} is not a mapping of names to settings (ignored)")
            return current
        merged = dict(current)
        for name, entry in value.items():
            where = _join(path, name)
            if not isinstance(name, str):
                self.issue(where, f"the name {_show(name)} is not a string; quote it (ignored)")
            elif isinstance(entry, Mapping):
                base = merged[name] if name in merged else _new_entry(cls, name)
                merged[name] = self.section(self.fixed_name(entry, name, where), base, where)
            elif entry is not None:
                self.issue(where, f"{_show(entry)} is not a mapping of settings (ignored)")
        return merged

    def fixed_name(self, entry: Mapping[Any, Any], name: str, path: str) -> Mapping[Any, Any]:
        """An entry's ``name`` is always its key; drop a different one."""
        given = entry.get("name", name)
        if given in (name, None):
            return entry
        self.issue(f"{path}.name", f"{_show(given)} differs from the entry's key (using {name!r})")
        return {k: v for k, v in entry.items() if k != "name"}

    def unknown(self, path: str, key: Any, fields: Mapping[str, Any]) -> None:
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(fields)}"
        self.issue(path, f"unknown key; {hint} (ignored)")


def _new_entry(cls: type, name: str) -> Any:
    return cls(name=name) if "name" in _fields(cls) else cls()


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# -- leaves -----------------------------------------------------------------------------------


def _check_leaf(hint: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    """The value converted to the field's type, or :class:`_Invalid`."""
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid(f"{_show(value)} is not valid; valid values: true, false")
    if hint is str:
        return _check_str(value, meta)
    if hint is int or hint is float:
        return _check_number(value, hint, meta)
    if hint == int | str:
        return _check_int_or_choice(value, meta)
    if hint == tuple[str, ...]:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise _Invalid(f"{_show(value)} is not a list of strings")
    raise TypeError(f"config schema: unsupported field type {hint!r}")


def _check_str(value: Any, meta: Mapping[str, Any]) -> str:
    choices = meta.get("choices")
    valid = f"; valid values: {', '.join(choices)}" if choices else ""
    if not isinstance(value, str):
        raise _Invalid(f"{_show(value)} is not a string{valid}")
    if choices and value not in choices:
        raise _Invalid(f"{_show(value)} is not valid{valid}")
    if meta.get("plain_file_name") and (any(c in value for c in "/\\\0") or value in (".", "..")):
        raise _Invalid(f"{_show(value)} is not valid; valid: a file name without folders")
    return value


def _check_number(value: Any, kind: type, meta: Mapping[str, Any]) -> int | float:
    # bool is an int subclass, but `true` for a number is a mistake, not 1.
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_float = kind is float and isinstance(value, float) and math.isfinite(value)
    if not (is_int or is_float):
        expected = "an integer" if kind is int else "a number"
        valid = f"; valid: {range_text(meta)}" if _has_range(meta) else ""
        raise _Invalid(f"{_show(value)} is not {expected}{valid}")
    if not _in_range(value, meta):
        raise _Invalid(f"{_show(value)} is out of range; valid: {range_text(meta)}")
    return float(value) if kind is float else int(value)


def _check_int_or_choice(value: Any, meta: Mapping[str, Any]) -> int | str:
    """``n_gpu_layers``: a string from ``choices`` or an integer within min/max."""
    words = " or ".join(repr(c) for c in meta.get("choices", ()))
    valid = f"{words} or an integer"
    if _has_range(meta):
        valid += f" {range_text(meta)}"
    if isinstance(value, str) and value in meta.get("choices", ()):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{_show(value)} is not valid; valid: {valid}")
    if not _in_range(value, meta):
        raise _Invalid(f"{_show(value)} is out of range; valid: {valid}")
    return value


def _has_range(meta: Mapping[str, Any]) -> bool:
    return meta.get("min") is not None or meta.get("max") is not None


def _in_range(value: float, meta: Mapping[str, Any]) -> bool:
    lo, hi = meta.get("min"), meta.get("max")
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def range_text(meta: Mapping[str, Any]) -> str:
    """A field's valid range as shown to users ("1..64", ">= 0"; "any" when unbounded)."""
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f"{number_text(lo)}..{number_text(hi)}"
    if lo is not None:
        return f">= {number_text(lo)}"
    return f"<= {number_text(hi)}" if hi is not None else "any"


def number_text(x: float) -> str:
    """A bound or default as written in config (3, not 3.0)."""
    return str(int(x)) if float(x).is_integer() else repr(x)


def _kind(value: Any) -> str:
    return "a list" if isinstance(value, (list, tuple)) else _show(value)


def _show(value: Any, nested: bool = False) -> str:
    """A short, YAML-flavoured rendering; bounded, since a value may be huge (or aliased)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, (list, tuple)):
        if nested and value:
            return "[...]"
        items = [_show(v, True) for v in itertools.islice(value, 4)]
        return "[" + ", ".join(items + (["..."] if len(value) > 4 else [])) + "]"
    if isinstance(value, Mapping):
        if nested and value:
            return "{...}"
        pairs = [
            f"{_show(k, True)}: {_show(v, True)}" for k, v in itertools.islice(value.items(), 4)
        ]
        return "{" + ", ".join(pairs + (["..."] if len(value) > 4 else [])) + "}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
