"""Small model directories for a local vLLM: a tiny Llama with random weights, or a catalog
architecture with no weights at all (``--load-format dummy``). The files are written by
``in_venv.py`` under the vLLM venv's interpreter, which has torch, transformers and tokenizers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tools.localvllm.in_venv import SCRIPT

_MODEL_BUILD_TIMEOUT = 600.0


def _check_attention_shape(hidden_size: int, num_heads: int, num_kv_heads: int,
                           head_dim: int) -> None:
    if head_dim < 64:
        raise ValueError(
            f"head_dim={head_dim} is not supported by vLLM's CPU attention; use 64 or more")
    if num_heads <= 0 or num_kv_heads <= 0 or num_heads % num_kv_heads:
        raise ValueError(
            f"num_heads ({num_heads}) must be a positive multiple of num_kv_heads ({num_kv_heads})")
    if hidden_size <= 0:
        raise ValueError("hidden_size must be positive")


def _run_builder(python: Path, spec: dict) -> None:
    """Run ``in_venv.py`` under the vLLM venv's python to build a model directory."""
    try:
        done = subprocess.run(
            [str(python), "-I", str(SCRIPT), "_build-model"],
            input=json.dumps(spec), capture_output=True, text=True,
            timeout=_MODEL_BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"building the model took more than {_MODEL_BUILD_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"building the model in {spec['dest']} failed:\n{done.stderr[-4000:]}")


def write_tiny_llama(
    dest: Path,
    *,
    python: Path,
    hidden_size: int = 256,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 64,
    vocab_size: int = 1024,
    max_position_embeddings: int = 2048,
    intermediate_size: int | None = None,
    dtype: str = "bfloat16",
    seed: int = 0,
) -> Path:
    """Write a small Llama model with random weights to *dest* and return *dest*.

    The directory holds ``config.json``, ``model.safetensors``, a byte-level BPE
    tokenizer trained on a built-in text (``tokenizer.json``), a
    ``tokenizer_config.json`` with a chat template and ``generation_config.json``.
    The same arguments and seed give the same weights.
    """
    _check_attention_shape(hidden_size, num_heads, num_kv_heads, head_dim)
    if vocab_size < 512:
        raise ValueError("vocab_size must be at least 512 (256 bytes + merges + specials)")
    dest = Path(dest)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size or 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab_size,
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
    }
    _run_builder(Path(python), {"dest": str(dest), "config": config, "weights": True,
                                "seed": seed, "max_context": max_position_embeddings})
    return dest


_ARCHITECTURE_KEYS = {
    "architecture", "hidden_size", "num_layers", "num_attention_heads", "num_kv_heads",
    "head_dim", "vocab_size", "max_context", "intermediate_size",
}


def write_dummy_model(dest: Path, *, python: Path, architecture: Mapping) -> Path:
    """Write config + tokenizer (no weights) for ``--load-format dummy``; return *dest*.

    *architecture* keys: ``architecture`` (transformers class name, e.g.
    ``LlamaForCausalLM``), ``hidden_size``, ``num_layers``,
    ``num_attention_heads``, ``num_kv_heads``, ``head_dim``, ``vocab_size``,
    ``max_context`` and optionally ``intermediate_size`` (default: 8/3 of
    hidden_size rounded up to a multiple of 256). Any other key is copied
    into config.json unchanged (e.g. ``rope_theta``, ``sliding_window``).
    """
    missing = sorted((_ARCHITECTURE_KEYS - {"intermediate_size"}) - set(architecture))
    if missing:
        raise ValueError(f"architecture description lacks {', '.join(missing)}")
    arch = dict(architecture)
    hidden = int(arch["hidden_size"])
    _check_attention_shape(hidden, int(arch["num_attention_heads"]),
                           int(arch["num_kv_heads"]), int(arch["head_dim"]))
    intermediate = arch.get("intermediate_size") or -(-(8 * hidden // 3) // 256) * 256
    config = {
        "architectures": [str(arch["architecture"])],
        "hidden_size": hidden,
        "intermediate_size": int(intermediate),
        "num_hidden_layers": int(arch["num_layers"]),
        "num_attention_heads": int(arch["num_attention_heads"]),
        "num_key_value_heads": int(arch["num_kv_heads"]),
        "head_dim": int(arch["head_dim"]),
        "vocab_size": int(arch["vocab_size"]),
        "max_position_embeddings": int(arch["max_context"]),
        "torch_dtype": "bfloat16",
    }
    config.update({k: v for k, v in arch.items() if k not in _ARCHITECTURE_KEYS})
    dest = Path(dest)
    _run_builder(Path(python), {"dest": str(dest), "config": config, "weights": False,
                                "seed": 0, "max_context": int(arch["max_context"])})
    return dest
