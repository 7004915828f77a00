"""The llama.cpp runtime, imported lazily and wired into our logging.

Importing llama_cpp costs time, so it happens on first model load (in a worker thread), never at
server start-up. Its C logger is redirected to Python logging: llama-cpp-python's own callback
writes to stderr with an off-by-one level map, and with ``verbose=False`` it blanks fd 1 and 2 for
the whole process for about a second during a load, which would eat JSON-RPC output. So we load with
``verbose=True`` and let this callback decide what is worth logging.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from memlsp.models import compute_thread

llama_log = logging.getLogger("memlsp.llama_cpp")

# ggml_log_level: 1 DEBUG, 2 INFO, 3 WARN, 4 ERROR, 5 CONT(inue the previous line).
# llama.cpp's INFO is a page per load: keep it at our DEBUG.
_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}

_lock = threading.Lock()
_module: ModuleType | None = None
_callback: Any = None  # keep a reference: ctypes must not free the trampoline
_last_level = logging.DEBUG


# Warnings the vocabulary loader prints for our catalogue's models on every load; they are
# about the GGUF's metadata, harmless here (measured: completions and stops are right), and
# the user can do nothing about them.
_BENIGN_LOAD_WARNINGS = (
    "special_eos_id is not in special_eog_ids",
    "was not control-type; this is probably a bug in the model",
)


# How llama.cpp reports a computation its abort callback stopped (GGML_STATUS_ABORTED is 1,
# llama_decode's "aborted" is 2): what models.abort asks for on every cancel, not an error.
_ABORTED_ENDINGS = ("failed with error 1", "compute status: 1", "ret = 2")


def _forward(level: int, text: bytes | None, _user_data: Any) -> None:
    global _last_level
    message = (text or b"").decode("utf-8", errors="replace").rstrip("\n")
    if level != 5:
        _last_level = _LEVELS.get(level, logging.DEBUG)
        if _last_level == logging.WARNING and any(w in message for w in _BENIGN_LOAD_WARNINGS):
            _last_level = logging.DEBUG
        if _last_level == logging.ERROR and message.rstrip().endswith(_ABORTED_ENDINGS):
            _last_level = logging.DEBUG
    if message and llama_log.isEnabledFor(_last_level):
        llama_log.log(_last_level, "%s", message)


def llama_cpp() -> ModuleType:
    """Import llama_cpp once, with our log callback installed; thread-safe."""
    global _module, _callback
    with _lock:
        if _module is None:
            # On an internal assert ggml tries to attach gdb and can hang instead of exiting.
            os.environ.setdefault("GGML_NO_BACKTRACE", "1")
            import llama_cpp as module

            compute_thread.install(module)
            _callback = module.llama_log_callback(_forward)
            module.llama_log_set(_callback, ctypes.c_void_p(0))
            _module = module
        return _module


# Shared libraries of llama.cpp's GPU backends, as llama-cpp-python installs them.
_GPU_BACKENDS = ("libggml-cuda", "libggml-hip", "libggml-vulkan", "libggml-metal", "libggml-sycl")


def gpu_build_installed() -> bool:
    """Whether the installed llama-cpp-python has a GPU backend, found without importing it."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return False
    return has_gpu_backend(Path(folder) for folder in spec.submodule_search_locations)


def has_gpu_backend(package_folders: Iterable[Path]) -> bool:
    """Whether a llama_cpp package folder holds a GPU backend's library in its ``lib``."""
    for folder in package_folders:
        lib = folder / "lib"
        if lib.is_dir() and any(p.name.startswith(_GPU_BACKENDS) for p in lib.iterdir()):
            return True
    return False


def load_first_if_gpu_build() -> bool:
    """Import llama_cpp now, before numpy, when the build has a GPU backend.

    Measured on an H200 machine (CUDA 13 build of llama-cpp-python 0.3.36, numpy 2.5.2): with
    numpy imported first, every model load segfaulted, CPU-only loads included; with llama_cpp
    imported first, all ran. A process that will load models calls this before anything
    imports numpy. CPU builds keep the lazy import: start-up time matters more there and they
    were not seen to crash."""
    if not gpu_build_installed():
        return False
    llama_cpp()
    return True


def supports_gpu_offload() -> bool:
    return bool(llama_cpp().llama_supports_gpu_offload())


def resolve_gpu_layers(setting: int | str) -> tuple[int, str]:
    """Map ``n_gpu_layers`` to a number and a sentence saying what happened."""
    if isinstance(setting, int):
        return setting, f"n_gpu_layers={setting} (configured)"
    if supports_gpu_offload():
        return -1, "all layers offloaded to the GPU (auto: this llama.cpp build can offload)"
    return 0, "CPU only (auto: this llama.cpp build has no GPU offload)"
