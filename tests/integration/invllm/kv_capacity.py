"""Ask vLLM's own KV-cache code how many sequences fit: run inside the vLLM venv, JSON in and out.

Reads a list of cases on stdin, each::

    {"layers": ["full" | "sliding", ...], "window": 1024, "kv_heads": 16, "head_dim": 128,
     "max_model_len": 4096, "max_num_batched_tokens": 8192, "async_scheduling": true,
     "available_bytes": 117963178967}

and prints, for each, what vllm/v1/core/kv_cache_utils.py decides for bf16 KV with 16-token blocks:
``{"groups": [layers per group], "num_blocks": ..., "max_concurrency": ...}``, or, when one sequence of
``max_model_len`` does not fit, ``{"refused": true, "largest_length": ...}``: the length vLLM's error
names ("the estimated maximum model length is N"). No model and no device: only vLLM's grouping, block
and admission arithmetic, with the engine's settings it reads set here.
Imports vLLM only; nothing from the project.
"""

from __future__ import annotations

import json
import re
import sys
import types


def capacity(case: dict) -> dict:
    import torch
    from vllm.config import VllmConfig
    from vllm.v1.core import kv_cache_utils
    from vllm.v1.kv_cache_interface import FullAttentionSpec, SlidingWindowSpec

    common = dict(block_size=16, num_kv_heads=case["kv_heads"], head_size=case["head_dim"], dtype=torch.bfloat16)
    specs = {
        f"model.layers.{i}.self_attn.attn": (FullAttentionSpec(**common) if kind == "full"
                                             else SlidingWindowSpec(**common, sliding_window=case["window"]))
        for i, kind in enumerate(case["layers"])
    }
    config = VllmConfig()
    config.scheduler_config.max_num_batched_tokens = case["max_num_batched_tokens"]
    config.scheduler_config.async_scheduling = case["async_scheduling"]
    # Resolved by the engine core before profiling; NHD is the layout of the CUDA attention backends.
    object.__setattr__(config.cache_config, "kv_cache_layout", "NHD")
    # The only model settings the KV-cache sizing reads.
    object.__setattr__(config, "model_config", types.SimpleNamespace(
        max_model_len=case["max_model_len"], original_max_model_len=case["max_model_len"]))
    try:
        kv_config = kv_cache_utils.get_kv_cache_configs(config, [specs], [case["available_bytes"]])[0]
    except ValueError as error:
        found = re.search(r"estimated maximum model length is (\d+)", str(error))
        if found is None:
            raise
        return {"refused": True, "largest_length": int(found.group(1))}
    _, concurrency = kv_cache_utils.get_kv_cache_capacity(config, kv_config)
    return {"groups": [len(g.layer_names) for g in kv_config.kv_cache_groups], "num_blocks": kv_config.num_blocks,
            "max_concurrency": concurrency}


def main() -> int:
    cases = json.load(sys.stdin)
    json.dump([capacity(case) for case in cases], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
