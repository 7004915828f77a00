"""The embedding model: our GGUF conversion of all-MiniLM-L6-v2 against an independent numpy
forward pass of the original weights, and the Embedder on a real model pool."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from memlsp.config import Config, ModelSpec, load_config
from memlsp.memory import minilm_gguf
from memlsp.memory.embedder import Embedder, _fit_window, _token_count
from memlsp.models import ModelPool

MODEL = "minilm-l6-v2"

SENTENCES = [
    "Read the YAML settings file and return a dictionary.",
    "def parse_config(path: str) -> dict:\n    return yaml.safe_load(open(path))",
    "The quick brown fox jumps over the lazy dog!",
    "Ünïcödé text, 数字 and CamelCaseIdentifiers_with_underscores.",
]

Array = npt.NDArray[Any]


@pytest.fixture(scope="module")
def catalogue() -> dict[str, ModelSpec]:
    return Config().models or load_config(None, user_file=Path("/nonexistent.yaml")).config.models


# -- the numpy reference: BERT encoder + mean pooling, straight from the safetensors file ------


def _weights() -> dict[str, Array]:
    # The safetensors package's own reader: independent of the parser in minilm_gguf.
    st = pytest.importorskip("safetensors.numpy")
    loaded: dict[str, Array] = st.load_file(str(minilm_gguf.model_dir() / "model.safetensors"))
    return {k: v.astype(np.float64) for k, v in loaded.items()}


def _layer_norm(x: Array, w: Array, b: Array, eps: float = 1e-12) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


_erf = np.vectorize(math.erf)


def _reference_embedding(w: dict[str, Array], ids: list[int]) -> Array:
    n, heads = len(ids), 12
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    for i in range(6):
        p = f"encoder.layer.{i}."

        def linear(h: Array, name: str, p: str = p) -> Array:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (
            linear(x, f"attention.self.{n_}").reshape(n, heads, -1).transpose(1, 0, 2)
            for n_ in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        attn = np.exp(scores - scores.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        context = (attn @ v).transpose(1, 0, 2).reshape(n, -1)
        x = _layer_norm(
            x + linear(context, "attention.output.dense"),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        h = linear(x, "intermediate.dense")
        h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))  # exact GELU, as BERT's config says
        x = _layer_norm(
            x + linear(h, "output.dense"),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    pooled = x.mean(0)
    return np.asarray(pooled / np.linalg.norm(pooled))


def _reference_ids(text: str) -> list[int]:
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(minilm_gguf.model_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return list(tok.encode(text).ids)


# -- tests ---------------------------------------------------------------------------------------


def test_safetensors_parser_matches_the_reference_reader() -> None:
    ours = minilm_gguf.read_safetensors(minilm_gguf.model_dir() / "model.safetensors")
    st = pytest.importorskip("safetensors.numpy")
    theirs = st.load_file(str(minilm_gguf.model_dir() / "model.safetensors"))
    assert ours.keys() == theirs.keys()
    for name, array in theirs.items():
        assert ours[name].dtype == array.dtype, name
        np.testing.assert_array_equal(ours[name], array, err_msg=name)


def test_gguf_matches_numpy_forward_pass_and_tokenizer(embedding_model_pool: ModelPool) -> None:
    weights = _weights()
    with embedding_model_pool.acquire(MODEL) as model:
        llama = model.llama
        for text in SENTENCES:
            ids = _reference_ids(text)
            assert llama.tokenize(text.encode(), add_bos=True, special=False) == ids, text
            ours = np.asarray(llama.embed(text, normalize=True))
            cosine = float(ours @ _reference_embedding(weights, ids))
            assert cosine > 0.999, (text, cosine)


def test_catalogue_entry_loads_through_the_pool(
    embedding_model_pool: ModelPool, catalogue: dict[str, ModelSpec]
) -> None:
    spec = catalogue[MODEL]
    assert spec.role == "embed"
    assert spec.n_ctx == 512
    assert spec.file_name == "all-minilm-l6-v2-f16.gguf"
    assert not spec.pinned
    assert spec.source.kind == "assemble"
    assert spec.source.modules == ("memlsp.memory.minilm_gguf",)
    with embedding_model_pool.acquire(MODEL) as model:
        assert model.llama.n_embd() == 384
        assert model.llama.pooling_type() == 1  # LLAMA_POOLING_TYPE_MEAN, from our metadata
    assert embedding_model_pool.stats()["models"][MODEL]["path"].endswith(
        "all-minilm-l6-v2-f16.gguf"
    )


def test_embeddings_are_normalised_and_counted(embedder: Embedder) -> None:
    calls, texts = embedder.embed_calls, embedder.texts_embedded
    vectors = embedder.embed(["first text", "second text", ""])
    assert embedder.name == MODEL
    assert embedder.dimension == 384
    assert len(vectors) == 3
    for vector in vectors:
        assert len(vector) == 384
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    assert (embedder.embed_calls, embedder.texts_embedded) == (calls + 1, texts + 3)
    assert embedder.embed([]) == []
    assert embedder.embed_calls == calls + 1  # nothing to do is not a call


def test_similar_sentences_are_closer_than_unrelated_ones(embedder: Embedder) -> None:
    a, b, c = (
        np.asarray(v)
        for v in embedder.embed(
            [
                "def load_settings(path): return yaml.safe_load(open(path))",
                "read the configuration from a YAML file",
                "the weather in Lisbon is sunny today",
            ]
        )
    )
    assert float(a @ b) > float(a @ c) + 0.2
    assert float(b @ a) > float(b @ c) + 0.2


def test_long_texts_are_cut_to_the_window_by_tokens(
    embedding_model_pool: ModelPool, embedder: Embedder
) -> None:
    text = " ".join(f"identifier_{i} = compute(value_{i})" for i in range(400))  # ~4000 tokens
    with embedding_model_pool.acquire(MODEL) as model:
        llama = model.llama
        assert _token_count(llama, text) > 512
        fitted = _fit_window(llama, text, 512)
        assert text.startswith(fitted)
        assert _token_count(llama, fitted) <= 512
        assert _token_count(llama, text[: len(fitted) + 1]) > 512  # the longest prefix that fits
        assert _fit_window(llama, "short text", 512) == "short text"
        # The cut keeps [SEP] at the end: llama.cpp's own truncation would drop it.
        tokens = llama.tokenize(fitted.encode(), add_bos=True, special=False)
        assert tokens[0] == 101 and tokens[-1] == 102
    whole, prefix = embedder.embed([text, fitted])
    assert float(np.asarray(whole) @ np.asarray(prefix)) > 0.9999


def test_conversion_is_reproducible(tmp_path: Path) -> None:
    first, second = tmp_path / "a.gguf", tmp_path / "b.gguf"
    minilm_gguf.assemble(str(first))
    minilm_gguf.assemble(str(second))
    assert first.read_bytes() == second.read_bytes()
    assert 40 << 20 < first.stat().st_size < 50 << 20  # f16: about half the f32 safetensors


def test_conversion_refuses_what_it_does_not_understand(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(minilm_gguf.ConversionError, match="is not bert"):
        minilm_gguf.convert(tmp_path, str(tmp_path / "out.gguf"))
    broken = tmp_path / "model.safetensors"
    broken.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(minilm_gguf.ConversionError, match="exceeds the file"):
        minilm_gguf.read_safetensors(broken)
