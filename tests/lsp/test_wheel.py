"""The sdist and wheel work outside the checkout: `python -m build` on a copy of the checkout's
files (tracked and new, nothing ignored), the wheel installed with its dependencies into a fresh
venv by pip (what pipx does), then `memlsp doctor`, `models install`, `editor nvim` and
`complete` with the real 0.5B run from a folder outside the checkout.

The model packages (2 GB of wheels, the `models` extra) are not installed: the fresh install
reads the model cache already assembled on this machine, linked into a cache folder of its own.
The dependencies come from the package index through pip's cache (about a minute here: the
compiled llama-cpp-python wheel is cached by ./setup.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from memlsp.config.paths import model_cache_dir

ROOT = Path(__file__).resolve().parents[2]
FIM = "qwen2.5-coder-0.5b"
FIM_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
# In the wheel, beside the code: what the server, the demo and `memlsp editor` read at run time.
WHEEL_DATA = [
    "memlsp/config/models.yaml",
    "memlsp/config/refactors.yaml",
    "memlsp/base/py.typed",
    "memlsp/server/py.typed",
    "memlsp/server/demo/workspace/orders.py",
    "memlsp/server/demo/workspace/pricing.py",
    "memlsp/server/demo/workspace/ruff.toml",
    "memlsp/server/editors/nvim/lua/memlsp/init.lua",
    "memlsp/server/editors/vscode/package.json",
    "memlsp/server/editors/vscode/package-lock.json",
    "memlsp/server/editors/vscode/src/extension.ts",
    "memlsp-0.1.0.dist-info/licenses/LICENSE",
]
INSTALL_TIMEOUT_S = 1200  # without pip's cache, llama-cpp-python compiles (~10 min on 2 cores)

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        not (ROOT / ".git").exists() or shutil.which("git") is None,
        reason="builds from the checkout's files: needs a git checkout and git",
    ),
]


@dataclass(frozen=True)
class FreshInstall:
    venv: Path
    wheel: Path
    sdist: Path
    env: dict[str, str]  # the user's environment minus the checkout, with private XDG folders
    outside: Path  # a folder outside the checkout to run from

    def memlsp(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "memlsp"), *args, timeout=timeout)

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.outside,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def copy_checkout(target: Path) -> None:
    """The files a clone plus the current work would hold: tracked and untracked, not ignored
    (no .venv, build/, node_modules or caches), so the build sees no leftovers."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def outside_env(tmp: Path) -> dict[str, str]:
    """No trace of the checkout's venv (PATH, PYTHONPATH), an empty config folder and a cache
    folder whose models/ is this machine's model cache."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MEMLSP_CACHE_DIR"}
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and not _inside_checkout(Path(p))
    )
    (tmp / "config").mkdir()
    cache = tmp / "cache"
    (cache / "memlsp").mkdir(parents=True)
    (cache / "memlsp" / "models").symlink_to(model_cache_dir(), target_is_directory=True)
    # pip's cache stays the user's: it holds the llama-cpp-python wheel ./setup.sh compiled,
    # which pip under the private XDG_CACHE_HOME would compile again (~10 min on 2 cores).
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    env.setdefault("PIP_CACHE_DIR", str(user_cache / "pip"))
    env["XDG_CONFIG_HOME"] = str(tmp / "config")
    env["XDG_CACHE_HOME"] = str(cache)
    # As ./setup.sh builds it when pip's cache has no llama-cpp-python wheel.
    env.setdefault("CMAKE_ARGS", "-DGGML_NATIVE=OFF")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _inside_checkout(path: Path) -> bool:
    try:
        return path.resolve().is_relative_to(ROOT)
    except OSError:
        return False


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshInstall]:
    pytest.importorskip("build", reason="`python -m build` comes with the test extra")
    if not (model_cache_dir() / FIM_FILE).is_file():
        pytest.skip(f"{FIM} is not assembled: run ./setup.sh (or `memlsp models install`)")
    tmp = tmp_path_factory.mktemp("wheel")
    source, dist, venv, outside = tmp / "source", tmp / "dist", tmp / "venv", tmp / "outside"
    copy_checkout(source)
    outside.mkdir()
    env = outside_env(tmp)
    # The sdist first, then the wheel from the unpacked sdist: the wheel proves the sdist whole.
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(source)],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("memlsp-*.whl")
    (sdist,) = dist.glob("memlsp-*.tar.gz")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], env=env, check=True, timeout=300)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    yield FreshInstall(venv, wheel, sdist, env, outside)


def test_the_wheel_and_the_sdist_carry_the_data(fresh: FreshInstall) -> None:
    names = set(zipfile.ZipFile(fresh.wheel).namelist())
    assert [n for n in WHEEL_DATA if n not in names] == []
    # Built outside, never from the checkout's own folders.
    assert not [n for n in names if "node_modules" in n or "/tests/" in n]
    with tarfile.open(fresh.sdist) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        members = {n.removeprefix(top + "/") for n in sdist.getnames()}
    needed = ["LICENSE", "README.md", "pyproject.toml", "config/base/py.typed"]
    needed += ["config/models.yaml", "server/demo/workspace/orders.py"]
    needed += ["editors/nvim/lua/memlsp/init.lua", "editors/vscode/package-lock.json"]
    assert [n for n in needed if n not in members] == []


def test_memlsp_and_ruff_come_from_the_fresh_venv(fresh: FreshInstall) -> None:
    shown = fresh.run(
        str(fresh.venv / "bin" / "python"),
        "-c",
        "import json, memlsp.server, ruff; "
        "print(json.dumps([memlsp.server.__file__, ruff.__file__]))",
    )
    assert shown.returncode == 0, shown.stderr
    for path in json.loads(shown.stdout):
        assert Path(path).resolve().is_relative_to(fresh.venv.resolve()), path


def test_doctor_reports_no_warnings(fresh: FreshInstall) -> None:
    result = fresh.memlsp("doctor", "--no-load")
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "0 failed, 0 warnings" in result.stdout, report
    assert "ok    tool ruff" in result.stdout, report  # ruff is a dependency of the wheel
    # The catalogue is the installed package's, not the checkout's.
    assert str(fresh.venv) in next(
        line for line in result.stdout.splitlines() if "config files" in line
    )


def test_models_install_and_editor_nvim_work_from_any_folder(fresh: FreshInstall) -> None:
    # Nothing to assemble without the model packages but what the cache holds already.
    installed = fresh.memlsp("models", "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    plugin = fresh.memlsp("editor", "nvim", "--path")
    assert plugin.returncode == 0, plugin.stderr
    folder = Path(plugin.stdout.strip())
    assert folder.resolve().is_relative_to(fresh.venv.resolve())
    assert (folder / "lua" / "memlsp" / "init.lua").is_file()


def test_complete_with_the_real_model(fresh: FreshInstall) -> None:
    (fresh.outside / "add.py").write_text("def add(a, b):\n    \n\nprint(add(1, 2))\n")
    result = fresh.memlsp("complete", "add.py:2:5", "--json", "--model", FIM, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    suggestion = json.loads(result.stdout)
    assert suggestion["model"] == FIM
    assert "return" in suggestion["text"], suggestion
