"""docs/configuration.md is the schema's own reference: generated, never edited by hand."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from memlsp.config import Config, load_config
from memlsp.config.docs import REGENERATE, render_configuration_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_page_matches_the_schema() -> None:
    written = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert written == render_configuration_markdown(), (
        f"{DOC} is out of date with config/schema.py; regenerate it: {REGENERATE}"
    )


def test_every_leaf_key_has_a_row() -> None:
    page = render_configuration_markdown()
    for section in dataclasses.fields(Config):
        assert f"## `{section.name}" in page
    for key in ("pool.memory_budget_mb", "agents.generator.token_healing", "memory.search_k"):
        assert f"| `{key}` |" in page


def test_the_example_loads_without_issues(tmp_path: Path) -> None:
    example = re.search(r"```yaml\n(.*?)```", render_configuration_markdown(), re.DOTALL)
    assert example is not None
    user_file = tmp_path / "config.yaml"
    user_file.write_text(example.group(1), encoding="utf-8")
    loaded = load_config(user_file=user_file)
    assert loaded.issues == ()
    assert yaml.safe_load(example.group(1))["pool"]["memory_budget_mb"] == (
        loaded.config.pool.memory_budget_mb
    )
