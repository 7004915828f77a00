"""docs/configuration.md, generated from the schema so the reference cannot drift from the code.

Each key's dotted name, type, default and description come from the dataclasses in
``schema.py`` and ``refactor_schema.py`` (descriptions from each field's ``metadata["doc"]``,
section texts from the class docstrings): documenting a setting means documenting its field.
``python -m memlsp.config.docs`` prints the page; ``--write`` writes it to docs/configuration.md
(run from the repository root). tests/unit/test_configuration_doc.py fails when the file is stale.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from memlsp.config.loader import _GUARDED, CATALOGUE_PATH, number_text, range_text
from memlsp.config.schema import Config

DOC_PATH = Path("docs") / "configuration.md"
REGENERATE = ".venv/bin/python -m memlsp.config.docs --write"

_INTRO = f"""\
# Configuration

<!-- Generated from config/schema.py by `{REGENERATE}`; do not edit by hand. -->

Layers, lowest first: the built-in defaults below (with the model catalogue
`config/models.yaml`) < your file `$XDG_CONFIG_HOME/memlsp/config.yaml` < the workspace's
`.memlsp.yaml` < the client's `initializationOptions` < the client's `memlsp` settings
(`workspace/configuration`, applied live on `workspace/didChangeConfiguration`). Mappings merge
key by key, so a layer only names what it changes.

A bad value is reported once with the file, the key, the value and the valid values, and that
key falls back to the layer below; an unknown key gets a "did you mean". The workspace's file and
the client's settings are untrusted: keys marked **Your file only** are ignored there (some can
be opened per flag under `security`).

Example (`~/.config/memlsp/config.yaml`):

```yaml
pool:
  memory_budget_mb: 4096
agents:
  generator:
    model: qwen2.5-coder-1.5b   # the larger model, for a machine with more cores or a GPU
  quality:
    enabled: false              # linters only on save
memory:
  exclude: ["fixtures/**"]
models:
  qwen2.5-coder-0.5b:
    n_gpu_layers: 0             # keep it on the CPU
```
"""


@dataclasses.dataclass(frozen=True)
class _Section:
    """One table of the page: the leaf keys of one dataclass under a dotted path."""

    path: str
    cls: type
    note: str


def render_configuration_markdown() -> str:
    """The whole page, deterministic: it depends only on the schema and the shipped files."""
    sections = [s for s in _sections(Config, "", "") if s.path]  # the top level holds only sections
    return "\n".join([_INTRO, *(_render_section(s) for s in sections)])


def _sections(cls: type, path: str, note: str) -> Iterator[_Section]:
    """``cls``'s own table, then one per nested dataclass (depth first, in field order)."""
    yield _Section(path, cls, note)
    defaults = _defaults(cls)
    for f, hint in _fields(cls):
        where = _join(path, f.name)
        nested = _nested_class(hint)
        if nested is not None:
            yield from _sections(nested, where, _field_doc(cls, f))
        elif typing.get_origin(hint) is dict:
            entry = typing.get_args(hint)[1]
            names = _entry_names(cls, f.name, defaults.get(f.name))
            yield from _sections(entry, f"{where}.<name>", _entries_note(cls, f, names))


def _render_section(section: _Section) -> str:
    rows = [
        _row(section, f, hint)
        for f, hint in _fields(section.cls)
        if _nested_class(hint) is None and typing.get_origin(hint) is not dict
    ]
    lines = [f"## `{section.path}`", ""]
    text = " ".join(_sentence(t) for t in (_class_doc(section.cls), section.note) if t)
    if text:
        lines += [text, ""]
    if rows:
        lines += ["| key | type | default | description |", "|---|---|---|---|", *rows, ""]
    return "\n".join(lines)


def _row(section: _Section, f: dataclasses.Field[Any], hint: Any) -> str:
    default = _defaults(section.cls).get(f.name)
    cells = (
        f"`{_join(section.path, f.name)}`",
        _type_text(hint, f.metadata),
        f"`{_yaml_scalar(default)}`",
        _field_doc(section.cls, f),
    )
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


# -- reading the schema ------------------------------------------------------------------------


def _fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def _defaults(cls: type) -> dict[str, Any]:
    """The defaults as an instance built with no arguments holds them (factories included)."""
    instance = cls()
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(cls)}


def _nested_class(hint: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), else None."""
    candidates = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if len(candidates) == 1 and isinstance(candidates[0], type):
        return candidates[0] if dataclasses.is_dataclass(candidates[0]) else None
    return None


def _class_doc(cls: type) -> str:
    doc = cls.__dict__.get("__doc__") or ""
    if doc.startswith(cls.__name__ + "("):  # dataclass's generated signature, not a docstring
        return ""
    return _markdown(" ".join(inspect.cleandoc(doc).split()))


def _field_doc(cls: type, f: dataclasses.Field[Any]) -> str:
    doc = _markdown(str(f.metadata.get("doc", "")))
    if (cls, f.name) not in _GUARDED:
        return doc
    flag = _GUARDED[(cls, f.name)]
    trust = "**Your file only**" + (f" (unless `security.{flag}: true`)" if flag else "")
    return f"{doc}. {trust}" if doc else trust


def _entries_note(cls: type, f: dataclasses.Field[Any], names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names) if names else "none"
    doc = _field_doc(cls, f)
    return (_sentence(doc) + " " if doc else "") + f"Built-in entries: {shown}."


def _entry_names(cls: type, name: str, default: Any) -> list[str]:
    """The built-in entries of a mapping: its default, or for the models the shipped catalogue."""
    if cls is Config and name == "models":
        return list(yaml.safe_load(CATALOGUE_PATH.read_text(encoding="utf-8")))
    return list(default) if isinstance(default, Mapping) else []


# -- rendering -----------------------------------------------------------------------------------


def _type_text(hint: Any, meta: Mapping[str, Any]) -> str:
    choices = meta.get("choices") or ()
    if hint is bool:
        return "boolean"
    if hint is str and choices:
        return "one of " + ", ".join(f"`{c}`" for c in choices)
    if hint is str:
        return "file name (no folders)" if meta.get("plain_file_name") else "string"
    if hint == tuple[str, ...]:
        return "list of strings"
    names = {int: "integer", float: "number"}
    if hint in names:
        return names[hint] + _range_text(meta)
    if hint == int | str:
        words = " or ".join(f"`{c}`" for c in choices)
        return f"{words} or integer{_range_text(meta)}"
    raise TypeError(f"configuration docs: no rendering for field type {hint!r}")


def _range_text(meta: Mapping[str, Any]) -> str:
    text = range_text(meta)
    return "" if text == "any" else " " + text


def _yaml_scalar(value: Any) -> str:
    """A default as it would be written in YAML (JSON's spelling of it is valid YAML)."""
    if isinstance(value, float):
        return number_text(value)
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", ")", ":")) else text + "."


def _markdown(text: str) -> str:
    """RST-style double backticks (the docstrings') as Markdown code."""
    return text.replace("``", "`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m memlsp.config.docs", description="Print (or write) the config reference."
    )
    parser.add_argument(
        "--write", action="store_true", help=f"write {DOC_PATH} (from the repository root)"
    )
    args = parser.parse_args(argv)
    text = render_configuration_markdown()
    if args.write:
        DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOC_PATH.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
