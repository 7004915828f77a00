"""The command line: doctor, complete, models, and their failure messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memlsp.config import Config, load_config
from memlsp.models.assembly import target_path


def run(*args: str, config_home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    return subprocess.run(
        [sys.executable, "-m", "memlsp.server.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    home = tmp_path / "config"
    (home / "memlsp").mkdir(parents=True)
    return home


def test_doctor_all_ok_on_defaults(config_home: Path, tmp_path: Path) -> None:
    result = run("doctor", "--no-load", "--workspace", str(tmp_path), config_home=config_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    model qwen2.5-coder-0.5b" in result.stdout
    assert "0 failed" in result.stdout


def test_doctor_pinpoints_broken_model_and_bad_config_key(
    config_home: Path, tmp_path: Path
) -> None:
    good = target_path(load_config(None).config.models["qwen2.5-coder-0.5b"])
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(good.read_bytes()[: 1 << 20])  # truncated copy
    (config_home / "memlsp" / "config.yaml").write_text(
        "models:\n"
        "  broken-coder:\n"
        "    role: fim\n"
        "    fim: {}\n"
        f"    source: {{kind: path, path: {broken}}}\n"
        f"    size_bytes: {good.stat().st_size}\n"
        "agents:\n  generator:\n    model: broken-coder\n"
    )
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / ".memlsp.yaml").write_text("pool:\n  memory_budjet_mb: 100\n")
    result = run("doctor", "--no-load", "--workspace", str(workspace), config_home=config_home)
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL  model broken-coder" in out
    assert str(broken) in out and "truncated" in out
    assert "did you mean 'memory_budget_mb'" in out
    assert "1 failed" in out


@pytest.mark.model
def test_complete_prints_the_suggestion(config_home: Path, tmp_path: Path) -> None:
    source = tmp_path / "calc.py"
    source.write_text("def add(a, b):\n    \n")
    result = run("complete", f"{source}:2:5", config_home=config_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.replace(" ", "").startswith("returna+b")


@pytest.mark.model
def test_complete_uses_the_built_memory_and_takes_a_relative_path(
    config_home: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "shop"
    workspace.mkdir()
    (workspace / ".memlsp.yaml").write_text("")  # marks the workspace root
    (workspace / "pricing.py").write_text(
        "def apply_loyalty_discount(total_cents, tier):\n"
        '    """Discount for the customer tier: gold 10 %, silver 5 %."""\n'
        "    return total_cents * {'gold': 90, 'silver': 95}.get(tier, 100) // 100\n"
    )
    # The import makes pricing.py's function relevant to the cursor (other-file context must
    # be: agents.generator.context_filter).
    (workspace / "checkout.py").write_text(
        "from pricing import apply_loyalty_discount\n\n\ndef total(order):\n    \n"
    )
    without = run("complete", "checkout.py:5:5", "--json", config_home=config_home, cwd=workspace)
    assert without.returncode in (0, 1), without.stderr
    assert json.loads(without.stdout)["context"] == []  # no memory built yet: none used
    assert run("index", ".", config_home=config_home, cwd=workspace).returncode == 0
    built = run("complete", "checkout.py:5:5", "--json", config_home=config_home, cwd=workspace)
    assert built.returncode in (0, 1), built.stderr  # 1: an empty suggestion, still a result
    assert ["memory", "pricing.py"] in json.loads(built.stdout)["context"]
    missing = run("complete", "nowhere.py:1:1", config_home=config_home, cwd=workspace)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_complete_rejects_a_line_outside_the_file(config_home: Path, tmp_path: Path) -> None:
    source = tmp_path / "calc.py"
    source.write_text("x = 1\n")
    result = run("complete", f"{source}:40:1", config_home=config_home)
    assert result.returncode == 2
    assert "line 40 is outside 1..2" in result.stderr


def test_missing_model_names_the_package(config_home: Path, tmp_path: Path) -> None:
    (config_home / "memlsp" / "config.yaml").write_text(
        "models:\n  ghost:\n    role: fim\n    fim: {}\n    source:\n      kind: parts\n"
        "      modules: [ghost_part1]\n      packages: [ghost-part1]\n"
    )
    source = tmp_path / "a.py"
    source.write_text("def f():\n    \n")
    result = run("complete", f"{source}:2:5", "--model", "ghost", config_home=config_home)
    assert result.returncode == 1
    assert "pip install ghost-part1" in result.stderr


def test_models_list(config_home: Path) -> None:
    result = run("models", "list", config_home=config_home)
    assert result.returncode == 0
    for name in Config().models or load_config(None).config.models:
        assert name in result.stdout


@pytest.mark.model
def test_review_reports_like_a_linter_and_exits_1(config_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef f(x):\n    return x\n")
    result = run("review", str(bad), "--no-llm", config_home=config_home)
    assert result.returncode == 1, result.stderr
    assert f"{bad}:1:8: F401 `os` imported but unused [ruff]" in result.stdout
    good = tmp_path / "good.py"
    good.write_text("def f(x):\n    return x\n")
    clean = run("review", str(good), "--no-llm", config_home=config_home)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout == ""


@pytest.mark.model
def test_index_builds_the_memory(config_home: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "shapes.py").write_text("def area(r):\n    return 3.14 * r * r\n")
    (workspace / ".env").write_text("TOKEN=abc123456\n")
    result = subprocess.run(
        [sys.executable, "-m", "memlsp.server.cli", "index", str(workspace)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            **os.environ,
            "XDG_CONFIG_HOME": str(config_home),
        },
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["chunks"] >= 1
    assert status["skipped"].get("secret") == 1
    assert "files" in result.stderr  # the progress line
    assert "indexed 1 files, " in result.stderr and "skipped 1 (1 secret)" in result.stderr
    assert " INFO " not in result.stderr  # logs at warning: the command's own lines are read
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    cli = [sys.executable, "-m", "memlsp.server.cli", "index", str(workspace)]
    options: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 300, "env": env}
    again = subprocess.run(cli, **options)
    assert json.loads(again.stdout)["last_run"]["embedded"] == 0  # nothing changed
    rebuilt = subprocess.run([*cli, "--rebuild"], **options)
    assert json.loads(rebuilt.stdout)["last_run"]["embedded"] >= 1, rebuilt.stderr
