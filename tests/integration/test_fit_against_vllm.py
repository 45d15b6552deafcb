"""The memory estimator against vLLM's own code, in the pinned release's CPU build.

- For full-attention and sliding-window layouts, vLLM's grouping, block and admission arithmetic
  (invllm/kv_capacity.py) gives the concurrency the estimate reports for the same KV memory, and, where
  one sequence does not fit, names the longest length the estimate names.
- For every accelerator of the catalog (TPU v6e included), vLLM's scheduler defaults
  (invllm/batch_defaults.py) are the ones the estimate assumes.

This checks the KV side of stacks/fit.py exactly; the memory budget around it (weights, activations,
non-torch memory) is checked against logged start-ups (tests/stacks/data/kv_calibration.yaml).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stacks.catalog import CATALOG
from stacks.fit import GIB, FitRequest, default_max_num_batched_tokens, default_max_num_seqs, estimate, window_kept

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parent / "invllm" / "kv_capacity.py"
DEFAULTS_SCRIPT = Path(__file__).resolve().parent / "invllm" / "batch_defaults.py"
CASES = [
    # (model, accelerator, max_model_len)
    ("google/gemma-3-1b-it", "nvidia-l4", 32768),
    ("google/gemma-3-4b-it", "nvidia-l4", 8192),
    ("google/gemma-3-12b-it", "nvidia-h100-80gb", 131072),
    ("google/gemma-3-27b-it", "nvidia-h200-141gb", 4096),
    ("google/gemma-3-27b-it", "nvidia-h200-141gb", 32768),
    ("google/gemma-3-27b-it", "nvidia-h200-141gb", 131072),
    ("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4", 8192),
    # One sequence does not fit: vLLM refuses and names the longest length that does.
    ("google/gemma-3-27b-it", "nvidia-h100-80gb", 131072),
    ("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4", 131072),
]


def _layers(model) -> list[str]:
    """Gemma 3's pattern (google-deepmind/gemma GEMMA3_ATTENTION_PATTERN): five local layers, then a global one."""
    if not model.sliding_window_layers:
        return ["full"] * model.num_layers
    layers = ["full" if i % 6 == 5 else "sliding" for i in range(model.num_layers)]
    assert layers.count("sliding") == model.sliding_window_layers, model.hf_id
    return layers


def test_estimated_concurrency_is_what_vllm_computes(vllm_python):
    requests = [FitRequest(model=CATALOG.model(hf_id), accelerator=CATALOG.accelerators[accelerator], devices=1,
                           gpu_memory_utilization=0.9, max_model_len=length) for hf_id, accelerator, length in CASES]
    estimates = [estimate(r) for r in requests]
    cases = [{"layers": _layers(r.model), "window": r.model.sliding_window or 0, "kv_heads": r.model.num_kv_heads,
              "head_dim": r.model.head_dim, "max_model_len": r.max_model_len,
              "max_num_batched_tokens": e.max_num_batched_tokens,
              # vLLM's default on GPUs from the release vllm_defaults.yaml names; the estimate assumes it.
              "async_scheduling": True, "available_bytes": int(e.kv_cache_gib_per_device * GIB)}
             for r, e in zip(requests, estimates, strict=True)]
    assert all(window_kept(r) for r in requests if r.model.sliding_window_layers)
    answers = _ask(vllm_python, SCRIPT, cases)
    assert any(answer.get("refused") for answer in answers) and not all(answer.get("refused") for answer in answers)
    for (hf_id, accelerator, length), est, vllm in zip(CASES, estimates, answers, strict=True):
        if vllm.get("refused"):
            print(f"[integration] {hf_id} on {accelerator} at {length}: vLLM refuses, longest {vllm['largest_length']}; "
                  f"estimate {'refuses' if not est.context_fits else 'accepts'}, longest {est.largest_max_model_len}")
            assert not est.context_fits, (hf_id, accelerator, length)
            assert est.largest_max_model_len == vllm["largest_length"], (hf_id, est.largest_max_model_len, vllm)
            continue
        ours = est.sequences_at_max_model_len
        print(f"[integration] {hf_id} on {accelerator} at {length}: vLLM {vllm['max_concurrency']:.3f} "
              f"sequences ({vllm['groups']}), estimate {ours:.3f}")
        # vLLM counts whole blocks of the pool; the estimate divides bytes: at most a block apart.
        assert ours == pytest.approx(vllm["max_concurrency"], rel=2e-3), (hf_id, accelerator, length, vllm, ours)


def _ask(python, script: Path, cases: list) -> list:
    done = subprocess.run([str(python), "-I", str(script)], input=json.dumps(cases), capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_scheduler_defaults_are_what_vllm_picks_for_each_accelerator(vllm_python):
    devices = list(CATALOG.accelerators.values())
    # vLLM matches "a100" in the CUDA device name (the catalog's keys carry the same word) and names TPU chips.
    cases = [{"memory_bytes": a.memory_bytes, "device_name": "V6E" if a.key == "tpu-v6e" else a.key,
              "tpu": a.kind == "tpu"} for a in devices]
    assert any(case["tpu"] for case in cases), "no TPU in the catalog to check"
    for accelerator, vllm in zip(devices, _ask(vllm_python, DEFAULTS_SCRIPT, cases), strict=True):
        req = FitRequest(model=CATALOG.model("meta-llama/Llama-3.1-8B-Instruct"), accelerator=accelerator, devices=1,
                         gpu_memory_utilization=0.9, max_model_len=4096)
        ours = {"max_num_batched_tokens": default_max_num_batched_tokens(req), "max_num_seqs": default_max_num_seqs(req)}
        print(f"[integration] {accelerator.key}: vLLM {vllm}, estimate {ours}")
        assert ours == vllm, accelerator.key
