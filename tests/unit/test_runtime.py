"""llama.cpp runtime helpers: telling a GPU build from a CPU one without importing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from memlsp.models import runtime


@pytest.mark.parametrize(
    ("files", "gpu"),
    [
        (["libllama.so", "libggml-cpu.so", "libggml-base.so"], False),
        (["libllama.so", "libggml-cpu.so", "libggml-cuda.so.0.25.3"], True),
        (["libggml-vulkan.so"], True),
        ([], False),
    ],
)
def test_gpu_backend_is_found_by_its_library(tmp_path: Path, files: list[str], gpu: bool) -> None:
    (tmp_path / "lib").mkdir()
    for name in files:
        (tmp_path / "lib" / name).write_bytes(b"")
    assert runtime.has_gpu_backend([tmp_path]) is gpu
    assert runtime.has_gpu_backend([tmp_path / "missing"]) is False


@pytest.mark.model
def test_installed_build_agrees_with_llama_cpp_and_cpu_builds_stay_lazy() -> None:
    # In a fresh process: whether the build can offload (asked of llama.cpp itself) must match
    # what was found without importing it, and on a CPU build nothing is imported early.
    probe = (
        "import sys\n"
        "from memlsp.models import runtime\n"
        "early = runtime.load_first_if_gpu_build()\n"
        "imported = 'llama_cpp' in sys.modules\n"
        "print(early, imported, runtime.supports_gpu_offload(), runtime.gpu_build_installed())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    early, imported, offload, found = (word == "True" for word in out)
    assert found == offload
    assert early == found and imported == found
