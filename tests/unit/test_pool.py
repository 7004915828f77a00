"""The model pool against real GGUF models (Gemma 3 270M and Qwen2.5-Coder 0.5B), no mocks."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from pathlib import Path

import pytest

from memlsp.config import Config, ModelSpec, PoolConfig
from memlsp.config.schema import ModelSource
from memlsp.models import (
    ModelBudgetError,
    ModelCorruptError,
    ModelMissingError,
    ModelPool,
    PoolClosedError,
    UnknownModelError,
)
from memlsp.models.assembly import assemble, target_path
from memlsp.models.prefill import prefill
from memlsp.models.runtime import resolve_gpu_layers, supports_gpu_offload

SMALL = "gemma3-270m"
FIM = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="module")
def catalogue() -> dict[str, ModelSpec]:
    models = Config().models or _shipped_catalogue()
    # Assemble once into the real model cache (a no-op when setup already did it).
    for name in (SMALL, FIM):
        assemble(models[name])
    return models


def _shipped_catalogue() -> dict[str, ModelSpec]:
    from memlsp.config import load_config

    return load_config(None, user_file=Path("/nonexistent/memlsp.yaml")).config.models


def _pool(catalogue: dict[str, ModelSpec], **pool_settings: float) -> ModelPool:
    return ModelPool(catalogue, PoolConfig(**pool_settings))  # type: ignore[arg-type]


def _generate(pool: ModelPool, name: str, prompt: str = "def add(a, b):") -> str:
    with pool.acquire(name) as model:
        out = model.llama.create_completion(prompt, max_tokens=8, temperature=0.0)
        return str(out["choices"][0]["text"])


@pytest.mark.model
def test_lazy_load_and_sharing(catalogue: dict[str, ModelSpec]) -> None:
    pool = _pool(catalogue)
    assert not pool.is_loaded(SMALL)
    assert pool.stats()["models"] == {}
    with pool.acquire(SMALL) as first:
        instance = first.llama
    with pool.acquire(SMALL) as second:
        assert second.llama is instance  # one instance shared by every caller
    stats = pool.stats()["models"][SMALL]
    assert (stats["misses"], stats["hits"], stats["loads"]) == (1, 1, 1)
    assert stats["loaded"] and stats["bytes"] > 250_000_000 and stats["load_seconds"] > 0
    pool.close()


@pytest.mark.model
def test_handle_is_unusable_after_release(catalogue: dict[str, ModelSpec]) -> None:
    pool = _pool(catalogue)
    with pool.acquire(SMALL) as model:
        pass
    with pytest.raises(RuntimeError, match="outside its acquire"):
        _ = model.llama
    pool.close()


@pytest.mark.model
def test_idle_eviction_spares_pinned(catalogue: dict[str, ModelSpec]) -> None:
    pinned = {
        **catalogue,
        SMALL: dataclasses.replace(catalogue[SMALL], pinned=True),
        FIM: dataclasses.replace(catalogue[FIM], pinned=False),
    }
    pool = _pool(pinned, idle_timeout_s=1)
    _generate(pool, SMALL)
    _generate(pool, FIM)
    pool.start_reaper(interval_s=0.2)
    deadline = time.monotonic() + 10
    while pool.is_loaded(FIM) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pool.is_loaded(FIM), "idle unpinned model was not evicted"
    assert pool.is_loaded(SMALL), "pinned model was evicted for idleness"
    assert pool.stats()["models"][FIM]["evictions"] == 1
    # Evicted models load again on demand.
    assert _generate(pool, FIM)
    assert pool.stats()["models"][FIM]["loads"] == 2
    pool.close()


@pytest.mark.model
def test_budget_evicts_least_recently_used(catalogue: dict[str, ModelSpec]) -> None:
    probe = _pool(catalogue)
    small, fim = probe.estimate(SMALL), probe.estimate(FIM)
    budget_mb = (max(small, fim) + min(small, fim) // 2) >> 20  # either fits, not both
    pool = _pool(catalogue, memory_budget_mb=budget_mb)
    _generate(pool, SMALL)
    _generate(pool, FIM)
    assert pool.is_loaded(FIM) and not pool.is_loaded(SMALL)
    assert pool.stats()["models"][SMALL]["evictions"] == 1
    assert pool.stats()["reserved_bytes"] <= budget_mb << 20
    pool.close()


@pytest.mark.model
def test_model_in_use_is_never_evicted(catalogue: dict[str, ModelSpec]) -> None:
    probe = _pool(catalogue)
    budget_mb = (max(probe.estimate(SMALL), probe.estimate(FIM)) + (64 << 20)) >> 20
    pool = _pool(catalogue, memory_budget_mb=budget_mb, acquire_timeout_s=0.5)
    with pool.acquire(SMALL):
        with pytest.raises(ModelBudgetError, match="beside models in use: gemma3-270m"):
            with pool.acquire(FIM):
                pass
        assert pool.is_loaded(SMALL)
    # Once released, the other model can take its place.
    assert _generate(pool, FIM)
    assert not pool.is_loaded(SMALL)
    pool.close()


def test_model_larger_than_budget_is_refused(catalogue: dict[str, ModelSpec]) -> None:
    pool = _pool(catalogue, memory_budget_mb=64)
    with pytest.raises(ModelBudgetError, match=r"more than pool\.memory_budget_mb=64"):
        with pool.acquire(SMALL):
            pass
    assert pool.stats()["reserved_bytes"] == 0
    pool.close()


@pytest.mark.model
def test_two_threads_on_one_model_are_serialized(catalogue: dict[str, ModelSpec]) -> None:
    pool = _pool(catalogue)
    inside, peak, results, errors = [0], [0], [], []
    guard = threading.Lock()

    def worker() -> None:
        try:
            for _ in range(4):
                with pool.acquire(SMALL) as model:
                    with guard:
                        inside[0] += 1
                        peak[0] = max(peak[0], inside[0])
                    out = model.llama.create_completion("x = 1\ny =", max_tokens=6, temperature=0.0)
                    results.append(out["choices"][0]["text"])
                    with guard:
                        inside[0] -= 1
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert peak[0] == 1
    assert len(results) == 8 and all(results)
    pool.close()


def test_unknown_model(catalogue: dict[str, ModelSpec]) -> None:
    pool = _pool(catalogue)
    with pytest.raises(UnknownModelError, match="not in the catalogue"):
        with pool.acquire("no-such-model"):
            pass


@pytest.mark.model
def test_missing_package_names_the_fix_and_pool_keeps_serving(
    catalogue: dict[str, ModelSpec], tmp_path: Path
) -> None:
    ghost = ModelSpec(
        name="ghost",
        source=ModelSource(
            kind="parts", modules=("memlsp_ghost_part1",), packages=("ghost-model-part1",)
        ),
        file_name="ghost.gguf",
    )
    pool = ModelPool({**catalogue, "ghost": ghost}, PoolConfig(), cache_dir=tmp_path)
    with pytest.raises(ModelMissingError) as err, pool.acquire("ghost"):
        pass
    assert "pip install ghost-model-part1" in str(err.value)
    assert "memlsp_ghost_part1" in str(err.value)
    assert "pip install" in pool.stats()["models"]["ghost"]["last_error"]
    assert _generate(pool, SMALL)
    pool.close()


def test_missing_path_model(catalogue: dict[str, ModelSpec], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    spec = ModelSpec(name="mine", source=ModelSource(kind="path", path=str(missing)))
    pool = ModelPool({"mine": spec})
    with pytest.raises(ModelMissingError, match=f"{missing} does not exist"):
        with pool.acquire("mine"):
            pass


@pytest.mark.model
@pytest.mark.parametrize("damage", ["truncate", "garbage_header", "truncated_tensors"])
def test_corrupt_file_is_named_with_fix(
    catalogue: dict[str, ModelSpec], tmp_path: Path, damage: str
) -> None:
    source = target_path(catalogue[SMALL])
    broken = tmp_path / "broken.gguf"
    data = source.read_bytes()
    size_bytes = len(data)
    if damage == "truncate":
        broken.write_bytes(data[: len(data) // 3])
    elif damage == "garbage_header":
        broken.write_bytes(b"\0" * 64 + data[64:])
    else:  # valid header, tensor data cut short, and no expected size to catch it early
        broken.write_bytes(data[: len(data) // 2])
        size_bytes = 0
    spec = ModelSpec(
        name="broken",
        source=ModelSource(kind="path", path=str(broken)),
        size_bytes=size_bytes,
        n_ctx=512,
    )
    pool = ModelPool({**catalogue, "broken": spec})
    with pytest.raises(ModelCorruptError) as err, pool.acquire("broken"):
        pass
    message = str(err.value)
    assert str(broken) in message
    assert "corrupt" in message or "could not load" in message
    assert pool.stats()["reserved_bytes"] == 0
    assert _generate(pool, SMALL)  # the pool keeps serving other models
    pool.close()


def test_corrupt_cache_copy_is_moved_aside_and_rebuilt(
    catalogue: dict[str, ModelSpec], tmp_path: Path
) -> None:
    spec = catalogue[SMALL]
    good = target_path(spec)
    cached = target_path(spec, tmp_path)
    shutil.copyfile(good, cached)
    with cached.open("r+b") as fh:
        fh.truncate(good.stat().st_size // 2)
    path = assemble(spec, tmp_path)
    assert path == cached and path.stat().st_size == good.stat().st_size
    assert list(tmp_path.glob(f"{cached.name}.corrupt-*"))


def test_concurrent_assembly_is_safe(catalogue: dict[str, ModelSpec], tmp_path: Path) -> None:
    spec = catalogue[SMALL]
    paths: list[Path] = []
    threads = [
        threading.Thread(target=lambda: paths.append(assemble(spec, tmp_path))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(paths) == 3 and len(set(paths)) == 1
    assert paths[0].stat().st_size == target_path(spec).stat().st_size
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.model
def test_gpu_offload_decision(catalogue: dict[str, ModelSpec]) -> None:
    layers, note = resolve_gpu_layers("auto")
    if supports_gpu_offload():
        assert layers == -1 and "GPU" in note
    else:
        assert layers == 0 and "CPU only" in note
    assert resolve_gpu_layers(7) == (7, "n_gpu_layers=7 (configured)")
    pool = _pool(catalogue)
    _generate(pool, SMALL)
    stats = pool.stats()["models"][SMALL]
    assert stats["gpu"] == note and stats["n_gpu_layers"] == layers
    with pool.acquire(SMALL) as model:
        # No layer offloaded means no KV cache on a GPU either (llama.cpp's default puts it
        # there whenever the build can).
        assert bool(model.llama.context_params.offload_kqv) == (layers != 0)
        assert bool(model.llama.context_params.op_offload) == (layers != 0)
    pool.close()


@pytest.mark.model
def test_flash_attention_follows_the_spec(catalogue: dict[str, ModelSpec]) -> None:
    """On by default (llama-server's default on CPU; faster prompts), off when the entry says."""
    from memlsp.models.runtime import llama_cpp

    lib = llama_cpp()
    off = dataclasses.replace(catalogue[SMALL], flash_attn=False)
    for spec, wanted in (
        (catalogue[SMALL], lib.LLAMA_FLASH_ATTN_TYPE_ENABLED),
        (off, lib.LLAMA_FLASH_ATTN_TYPE_DISABLED),
    ):
        pool = _pool({**catalogue, SMALL: spec})
        assert _generate(pool, SMALL)  # it loads and decodes either way
        with pool.acquire(SMALL) as model:
            assert model.llama.context_params.flash_attn_type == wanted
        pool.close()


@pytest.mark.model
def test_closed_pool_refuses(catalogue: dict[str, ModelSpec]) -> None:
    pool = _pool(catalogue)
    _generate(pool, SMALL)
    pool.close()
    assert not pool.is_loaded(SMALL)
    with pytest.raises(PoolClosedError), pool.acquire(SMALL):
        pass


@pytest.mark.model
def test_prefill_reuses_the_cache_and_stops_between_batches(
    catalogue: dict[str, ModelSpec],
) -> None:
    pool = _pool(catalogue)
    with pool.acquire(FIM) as model:
        llama = model.llama
        tokens = list(llama.tokenize(b"def area(r):\n    return 3.14159 * r * r\n" * 12))
        assert len(tokens) > 3 * 16
        cancel = threading.Event()
        assert prefill(llama, tokens, cancel, batch=16) == 0
        assert list(llama.input_ids[: llama.n_tokens]) == tokens
        # Same prompt: everything is reused; a changed tail re-evaluates only the tail.
        assert prefill(llama, tokens, cancel, batch=16) == len(tokens)
        assert prefill(llama, tokens, cancel, batch=16, last_for_logits=True) == len(tokens) - 1
        changed = tokens[:-5] + list(llama.tokenize(b"pass", add_bos=False))
        assert prefill(llama, changed, cancel, batch=16) == len(tokens) - 5
        # Cancelled before the first batch: nothing is evaluated past the common prefix.
        cancel.set()
        other = tokens[:20] + tokens[:40]
        assert prefill(llama, other, cancel, batch=16) is None
        assert llama.n_tokens == 20
    pool.close()
