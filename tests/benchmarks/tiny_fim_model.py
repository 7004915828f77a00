"""Write a tiny Qwen2-architecture GGUF: random weights, the real tokenizer of an installed model.

For checking mechanics where a real model cannot go (a GPU machine reached through a 64 MiB
upload): llama.cpp loads it like Qwen2.5-Coder, with the same vocabulary and FIM tokens, so the
pool's GPU offload, the KV cache and the generator's FIM path all run; what it writes is noise.

  .venv/bin/python tests/benchmarks/tiny_fim_model.py OUT.gguf [--from qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from memlsp.config import load_config
from memlsp.models.assembly import resolve

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 64, 4, 2, 128, 2


def _strings(field: Any) -> list[str]:
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def _scalar(field: Any) -> Any:
    return field.parts[field.data[0]].tolist()[0]


def write(source: Path, out: Path, seed: int = 0) -> int:
    reader = gguf.GGUFReader(source)
    fields = reader.fields
    writer = gguf.GGUFWriter(str(out), "qwen2")
    writer.add_name("memlsp tiny FIM check model (random weights)")
    writer.add_block_count(LAYERS)
    writer.add_context_length(4096)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    tokens = _strings(fields["tokenizer.ggml.tokens"])
    writer.add_token_list(tokens)
    writer.add_token_types(
        [
            int(fields["tokenizer.ggml.token_type"].parts[i][0])
            for i in fields["tokenizer.ggml.token_type"].data
        ]
    )
    writer.add_token_merges(_strings(fields["tokenizer.ggml.merges"]))
    writer.add_bos_token_id(_scalar(fields["tokenizer.ggml.bos_token_id"]))
    writer.add_eos_token_id(_scalar(fields["tokenizer.ggml.eos_token_id"]))
    writer.add_pad_token_id(_scalar(fields["tokenizer.ggml.padding_token_id"]))
    writer.add_add_bos_token(False)
    rng = np.random.default_rng(seed)

    def weight(name: str, rows: int, cols: int) -> None:
        data = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
        quantized = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def vector(name: str, size: int, value: float | None = None) -> None:
        data = np.full(size, value, np.float32) if value is not None else np.zeros(size, np.float32)
        writer.add_tensor(name, data)

    head_dim = HIDDEN // HEADS
    weight("token_embd.weight", len(tokens), HIDDEN)  # also the output layer (tied)
    vector("output_norm.weight", HIDDEN, 1.0)
    for i in range(LAYERS):
        vector(f"blk.{i}.attn_norm.weight", HIDDEN, 1.0)
        vector(f"blk.{i}.ffn_norm.weight", HIDDEN, 1.0)
        weight(f"blk.{i}.attn_q.weight", HIDDEN, HIDDEN)
        weight(f"blk.{i}.attn_k.weight", KV_HEADS * head_dim, HIDDEN)
        weight(f"blk.{i}.attn_v.weight", KV_HEADS * head_dim, HIDDEN)
        vector(f"blk.{i}.attn_q.bias", HIDDEN)
        vector(f"blk.{i}.attn_k.bias", KV_HEADS * head_dim)
        vector(f"blk.{i}.attn_v.bias", KV_HEADS * head_dim)
        weight(f"blk.{i}.attn_output.weight", HIDDEN, HIDDEN)
        weight(f"blk.{i}.ffn_gate.weight", FFN, HIDDEN)
        weight(f"blk.{i}.ffn_up.weight", FFN, HIDDEN)
        weight(f"blk.{i}.ffn_down.weight", HIDDEN, FFN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--from", dest="source", default="qwen2.5-coder-0.5b")
    args = parser.parse_args()
    spec = load_config(None).config.models[args.source]
    size = write(resolve(spec), args.out)
    sys.stderr.write(f"wrote {args.out} ({size / 1e6:.1f} MB)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
