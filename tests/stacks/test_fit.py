"""The memory-fit estimator against public vLLM start-up logs, and the Vertex tutorial's own failures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from stacks.catalog import CATALOG, AcceleratorSpec, ModelSpec, VisionEncoderSpec, parse_version
from stacks.fit import (
    BLOCK_SIZE,
    GIB,
    FitRequest,
    block_bytes,
    default_max_num_batched_tokens,
    default_max_num_seqs,
    device_tier,
    estimate,
    hybrid_layout,
    largest_fitting_max_num_seqs,
    sampler_bytes,
    suggest_gpu_memory_utilization,
    window_kept,
)

KIB = 1024
CALIBRATION = Path(__file__).resolve().parent / "data" / "kv_calibration.yaml"
# Every logged KV size must be matched within 10%. On these logs the KV cache is 15-75% of the budget, so
# 10% of it is 0.4-5 GiB: an error in the activation or non-torch terms of that size fails.
CALIBRATION_TOLERANCE = 0.10


def request(hf_id: str, accelerator: str, devices: int = 1, *, max_model_len: int = 4096, util: float = 0.9,
            **extra) -> FitRequest:
    model = CATALOG.model(hf_id)
    assert model is not None, hf_id
    return FitRequest(model=model, accelerator=CATALOG.accelerators[accelerator], devices=devices,
                      gpu_memory_utilization=util, max_model_len=max_model_len, **extra)


# --- calibration against logged start-ups (tests/stacks/data/kv_calibration.yaml) ----------------------


def _observations() -> list[dict]:
    return yaml.safe_load(CALIBRATION.read_text(encoding="utf-8"))["observations"]


def _model(spec) -> ModelSpec:
    if isinstance(spec, str):
        model = CATALOG.model(spec)
        assert model is not None, spec
        return model
    encoder = spec.get("vision_encoder")
    return ModelSpec(
        hf_id=spec["name"], aliases=(), architecture=spec["architecture"], params_billion=spec["params_billion"],
        num_layers=spec["num_layers"], cross_attention_layers=0, hidden_size=spec["hidden_size"],
        num_attention_heads=spec["num_attention_heads"], num_kv_heads=spec["num_kv_heads"], head_dim=spec["head_dim"],
        vocab_size=spec["vocab_size"], max_context=spec["max_context"], sliding_window=spec.get("sliding_window"),
        sliding_window_layers=spec.get("sliding_window_layers", 0), modality=spec.get("modality", "text"),
        gated=False, chat_template=False, weight_bytes_per_param=2.0, sources=(spec["source"],),
        intermediate_size=spec["intermediate_size"],
        vision_encoder=VisionEncoderSpec(**encoder) if encoder else None,
    )


def _device(spec) -> tuple[AcceleratorSpec, int | None]:
    if isinstance(spec, str):
        return CATALOG.accelerators[spec], None
    logged = round(spec["total_gib"] * GIB)
    device = AcceleratorSpec(key=spec["name"], kind=spec["kind"], memory_bytes=logged, vertex_accelerator=None,
                             gke_accelerator="", cloudrun_gpu=None, cloudrun_min_cpu=None,
                             cloudrun_min_memory_gib=None, sources=("the start-up log",))
    return device, logged


def calibration_request(obs: dict) -> FitRequest:
    accelerator, logged_total = _device(obs["device"])
    s = obs["settings"]
    return FitRequest(
        model=_model(obs["model"]), accelerator=accelerator, devices=s.get("tensor_parallel_size", 1),
        gpu_memory_utilization=s["gpu_memory_utilization"], max_model_len=s["max_model_len"],
        max_num_seqs=s.get("max_num_seqs"), max_num_batched_tokens=s.get("max_num_batched_tokens"),
        enforce_eager=s.get("enforce_eager", False), vllm_version=parse_version(obs["vllm"]),
        device_memory_bytes=logged_total, weight_bytes_per_param=s.get("weight_bytes_per_param"),
    )


def _by_check(check: str) -> list[dict]:
    return [obs for obs in _observations() if obs.get("check", "within_10_percent") == check]


def _group_tokens(req: FitRequest, kv_gib: float) -> int:
    """A hybrid model's "GPU KV cache size" as vLLM 0.10-0.11 logged it: whole blocks / KV cache groups x 16
    (vllm/v1/core/kv_cache_utils.py)."""
    layout = hybrid_layout(req.model)
    blocks = int(kv_gib * GIB // block_bytes(req))
    return blocks // (layout.full_groups + layout.sliding_groups) * BLOCK_SIZE


def relative_errors(obs: dict) -> dict[str, float]:
    """(estimate - logged) / logged for every figure the observation gives (kv_calibration.yaml header)."""
    req = calibration_request(obs)
    est = estimate(req)
    estimated = {
        "kv_tokens": lambda: est.kv_capacity_tokens,
        "kv_gib": lambda: est.kv_cache_gib_per_device,
        "concurrency": lambda: est.sequences_at_max_model_len,
        "group_tokens": lambda: _group_tokens(req, est.kv_cache_gib_per_device),
    }
    return {key: estimated[key]() / value - 1 for key, value in obs["logged"].items()}


def relative_error(obs: dict) -> float:
    """The largest error of the observation's figures, with its sign."""
    return max(relative_errors(obs).values(), key=abs)


def test_every_observation_is_sourced_and_checked():
    for obs in _observations():
        assert obs["source"].startswith("https://"), obs["id"]
        assert obs["log"].strip() and obs["vllm"], obs["id"]
        assert obs.get("check", "within_10_percent") in ("within_10_percent", "verdict", "known_miss"), obs["id"]
        if obs.get("check", "within_10_percent") != "within_10_percent":
            assert obs.get("why"), f"{obs['id']}: says why it is not held to 10%"


@pytest.mark.parametrize("obs", _by_check("within_10_percent"), ids=lambda obs: obs["id"])
def test_calibration_against_logged_startups(obs):
    errors = relative_errors(obs)
    off = {key: f"{error:+.1%}" for key, error in errors.items() if abs(error) > CALIBRATION_TOLERANCE}
    assert not off, f"{obs['id']}: estimate off by {off} from the logged {obs['logged']}"


@pytest.mark.parametrize("obs", _by_check("verdict"), ids=lambda obs: obs["id"])
def test_calibration_verdicts(obs):
    # vLLM refused the logged setting; the estimate must refuse it too, name a shorter length no shorter than
    # the fix that started, and accept the fix.
    req = calibration_request(obs)
    refused = estimate(req)
    fix = obs["fix"]["max_model_len"]
    assert refused.weights_fit and not refused.context_fits, f"{obs['id']}: {req.max_model_len} not refused"
    assert fix <= refused.largest_max_model_len < req.max_model_len, (obs["id"], refused.largest_max_model_len)
    assert estimate(dataclasses.replace(req, max_model_len=fix)).context_fits, f"{obs['id']}: the fix {fix} refused"


@pytest.mark.parametrize("obs", _by_check("known_miss"), ids=lambda obs: obs["id"])
def test_known_misses_stay_visible(obs):
    # Fails once the estimate comes within 10%: the observation then belongs with the others.
    error = relative_error(obs)
    assert abs(error) > CALIBRATION_TOLERANCE, f"{obs['id']} is now within 10% ({error:+.1%}): mark it within_10_percent"


def test_calibration_covers_several_devices_and_attention_kinds():
    observations = _by_check("within_10_percent")
    devices = {obs["device"] if isinstance(obs["device"], str) else obs["device"]["name"] for obs in observations}
    models = [_model(obs["model"]) for obs in observations]
    assert len(observations) >= 8 and len(devices) >= 3, (len(observations), devices)
    assert any(m.num_kv_heads == m.num_attention_heads for m in models), "no multi-head (non-GQA) model"
    assert any(m.num_kv_heads < m.num_attention_heads for m in models), "no GQA model"
    assert any(m.vision_encoder is not None for m in models), "no vision model"
    assert any(window_kept(calibration_request(obs)) and "concurrency" in obs["logged"] for obs in observations), (
        "no sliding-window model whose logged concurrency checks the window the hybrid KV cache keeps")
    assert {parse_version(obs["vllm"]) >= CATALOG.scheduler.v1_default_since for obs in observations} == {True, False}, (
        "both engines, V0 and V1, are calibrated")


def test_v1_sampler_warm_up_is_what_the_logged_peaks_show():
    # llm-d/llm-d-benchmark's H100 runs (vLLM 0.11, 1,024 rows): torch peaks of 4.76 GiB (Llama 3.1 8B) and
    # 5.56 GiB (Qwen3 0.6B), whatever the model's size; the V0 A10 run peaked at 0.22 GiB with 256 rows.
    obs = {o["id"]: o for o in _observations()}
    for name, logged in (("h100-llama-3.1-8b-v1", 4.76), ("h100-qwen3-0.6b-v1", 5.56), ("h100-qwen3-32b-v1", 5.64)):
        req = calibration_request(obs[name])
        assert sampler_bytes(req, 8192) / GIB == pytest.approx(logged, rel=0.05), name
    v0 = calibration_request(obs["a10-llama-3.1-8b-v0-chunked"])
    assert sampler_bytes(v0, 2048) / GIB < 0.25


def test_weights_match_the_logged_figure():
    # "Model loading took 14.99 GiB" for Llama 3.1 8B (github.com/ilseokoh/vllm-gce);
    # "Loading model weights took 57.7520 GB" per GPU for the 405B FP8 at TP 8 (vllm-project/vllm#6746).
    assert estimate(request("meta-llama/Llama-3.1-8B-Instruct", "nvidia-tesla-a100")).weights_gib_per_device == \
        pytest.approx(14.99, rel=0.01)
    est = estimate(request("meta-llama/Meta-Llama-3.1-405B-Instruct-FP8", "nvidia-h100-80gb", 8))
    assert est.weights_gib_per_device == pytest.approx(57.752, rel=0.02)


def test_activation_peak_matches_the_logged_one():
    # vllm-project/vllm#10517: peak_torch_memory 17.06 GiB with 14.99 GiB of weights at 20,000 batched tokens,
    # 17.98 at 29,000: 2.07 and 2.99 GiB of activations.
    obs = {o["id"]: o for o in _observations()}
    for name, logged in (("rtx-3090-llama-3.1-8b-v0-20k", 2.07), ("rtx-3090-llama-3.1-8b-v0-29k", 2.99)):
        est = estimate(calibration_request(obs[name]))
        activations = est.overhead_gib_per_device - 0.3  # NON_TORCH_GIB; TP 1, no graphs on V0
        assert activations == pytest.approx(logged, rel=0.05), name


# --- the Vertex tutorial's failures: Llama 3.2 11B Vision on the Model Garden image (V0) ---------------


def vision(accelerator: str, max_num_seqs: int | None, max_model_len: int = 4096) -> FitRequest:
    return request("meta-llama/Llama-3.2-11B-Vision-Instruct", accelerator, max_model_len=max_model_len,
                   max_num_seqs=max_num_seqs, vllm_version=(0, 6, 2))


def test_vision_4096_with_12_sequences_is_refused_with_a_shorter_length_and_2048_is_accepted():
    # Tutorial common issue 4: "max seq len (4096) is larger than the maximum number of tokens that can be
    # stored in KV cache (2256)", fixed with max_model_len 2048. Its vision deployment is the a2-highgpu-1g
    # (A100 40GB), 0.9, 4096, 12 sequences. The KV cache left is about 1% of the budget, so the estimate
    # (2,848 tokens) cannot match 2,256 to 10%; what it must get right is the verdict and the fix.
    refused = estimate(vision("nvidia-tesla-a100", 12))
    assert refused.weights_fit and not refused.context_fits
    assert 2048 <= refused.largest_max_model_len < 4096
    assert refused.kv_capacity_tokens == pytest.approx(2256, rel=0.35)
    assert refused.kv_bytes_per_token_per_device == 160 * KIB  # 32 self + 8 cross-attention layers in V0 blocks
    assert estimate(vision("nvidia-tesla-a100", 12, max_model_len=2048)).context_fits


def test_vision_256_sequences_need_hundreds_of_gib_and_12_fit():
    # Tutorial common issue 1: "CUDA out of memory. Tried to allocate 3.91 GiB. GPU 0 has a total capacity of
    # 39.38 GiB" with max_num_seqs 256; 12 is the fix.
    est = estimate(vision("nvidia-tesla-a100", 256, max_model_len=2048))
    assert not est.weights_fit
    assert est.needed_gib_per_device > 9 * est.budget_gib_per_device
    assert est.encoder_gib_per_device == pytest.approx(256 * 1.233, rel=0.01)
    assert 12 <= largest_fitting_max_num_seqs(vision("nvidia-tesla-a100", 256, max_model_len=2048)) < 16


def test_vision_profiling_scales_with_max_num_seqs_on_v0_only():
    few, many = estimate(vision("nvidia-a100-80gb", 4)), estimate(vision("nvidia-a100-80gb", 32))
    assert many.encoder_gib_per_device == pytest.approx(8 * few.encoder_gib_per_device)
    # Gemma 3 on V1: the encoder is profiled on what fills the encoder budget, whatever max_num_seqs is.
    g4 = estimate(request("google/gemma-3-12b-it", "nvidia-a100-80gb", max_num_seqs=4))
    g256 = estimate(request("google/gemma-3-12b-it", "nvidia-a100-80gb", max_num_seqs=256))
    assert g4.encoder_gib_per_device == g256.encoder_gib_per_device > 0


def test_vision_11b_does_not_fit_one_l4():
    # vLLM loads 19.91 GiB of weights (vllm-project/vllm#8879) and may use 0.9 x 22.05 GiB = 19.85 GiB of an L4.
    est = estimate(vision("nvidia-l4", 12))
    assert est.weights_gib_per_device > est.budget_gib_per_device
    assert not est.weights_fit and not estimate(vision("nvidia-l4", 12, max_model_len=2048)).context_fits


# --- the tutorials' recommended hardware ------------------------------------------------------------


def test_llama31_8b_fits_one_l4_at_4096():
    # About 24,000 KV tokens on a current release: 19.85 GiB of budget less 14.96 of weights, 1.16 of sampler
    # warm-up (256 rows), 0.5 of CUDA graphs and 0.3 of non-torch memory.
    est = estimate(request("meta-llama/Meta-Llama-3.1-8B", "nvidia-l4"))
    assert est.weights_fit and est.context_fits
    assert 5 * 4096 < est.kv_capacity_tokens < 7 * 4096


def test_llama31_70b_does_not_fit_one_l4():
    est = estimate(request("meta-llama/Meta-Llama-3.1-70B", "nvidia-l4"))
    assert not est.weights_fit and not est.context_fits
    assert est.weights_gib_per_device > est.budget_gib_per_device


def test_llama31_70b_fits_eight_l4():
    est = estimate(request("meta-llama/Meta-Llama-3.1-70B-Instruct", "nvidia-l4", 8))
    assert est.weights_fit and est.context_fits
    assert est.kv_bytes_per_token_per_device == 40 * KIB  # 320 KiB over 8 devices


def test_llama31_405b_fp8_fits_a3_highgpu_8g():
    est = estimate(request("meta-llama/Meta-Llama-3.1-405B-Instruct-FP8", "nvidia-h100-80gb", 8))
    assert est.weights_fit and est.context_fits


def test_llama31_70b_on_tpu_v6e_2x4():
    util = suggest_gpu_memory_utilization(CATALOG.accelerators["tpu-v6e"])
    est = estimate(request("meta-llama/Meta-Llama-3.1-70B", "tpu-v6e", 8, max_model_len=8192, util=util))
    assert est.weights_fit and est.context_fits
    assert not estimate(request("meta-llama/Meta-Llama-3.1-70B", "tpu-v6e", 4, max_model_len=8192, util=util)).weights_fit


def test_gemma3_1b_on_cloud_run_l4():
    est = estimate(request("google/gemma-3-1b-it", "nvidia-l4", max_model_len=32768))
    assert est.context_fits and est.largest_max_model_len == 32768


# --- formula details ----------------------------------------------------------------------------


def test_kv_heads_replicated_when_fewer_than_devices():
    eight = estimate(request("meta-llama/Llama-3.1-70B-Instruct", "nvidia-h100-80gb", 8))
    sixteen = estimate(request("meta-llama/Llama-3.1-70B-Instruct", "nvidia-h100-80gb", 16))
    assert sixteen.kv_bytes_per_token_per_device == eight.kv_bytes_per_token_per_device == 40 * KIB


def test_gemma3_sliding_window_is_window_aware():
    est = estimate(request("google/gemma-3-27b-it", "nvidia-h200-141gb", max_model_len=131072))
    # 8 KiB a layer-token. The 10 global layers hold all 131,072 tokens; the 52 local ones, padded to 60
    # (six groups of ten), hold the 1,024-token window plus two 8,192-token chunks in flight (async
    # scheduling, the current default): 1,023 + 16,384 = 17,407 tokens, 1,088 blocks, and one block more
    # because the window need not start on a block boundary.
    local_tokens = (1088 + 1) * 16
    assert est.max_num_batched_tokens == 8192
    assert est.kv_bytes_per_token_per_device == pytest.approx(8 * KIB * (10 * 131072 + 60 * local_tokens) / 131072)
    # 496 KiB a token were every layer to hold the whole sequence, 144 KiB here: 3.45 times the tokens.
    assert est.kv_capacity_tokens > 3.4 * est.kv_cache_gib_per_device * GIB / (62 * 8 * KIB)


def test_async_scheduling_doubles_the_in_flight_reserve_from_its_release():
    # Two batches in flight from vllm_defaults.yaml two_batches_in_flight_since (the pinned 0.32.0), one before.
    def per_token(version):
        return estimate(request("google/gemma-3-27b-it", "nvidia-h200-141gb", max_model_len=131072,
                                vllm_version=version)).kv_bytes_per_token_per_device

    since = CATALOG.scheduler.two_batches_in_flight_since
    one_batch = 8 * KIB * (10 * 131072 + 60 * (576 + 1) * 16) / 131072  # 1,023 + 8,192 tokens: 576 blocks + 1
    assert per_token((0, 11, 0)) == pytest.approx(one_batch)
    assert per_token(since) == per_token(None) > per_token((0, 11, 0))


def test_extra_args_that_change_the_reservation_are_honoured():
    # --no-async-scheduling: one chunk in flight; --disable-hybrid-kv-cache-manager: every layer full.
    def per_token(**flags):
        return estimate(request("google/gemma-3-27b-it", "nvidia-h200-141gb", max_model_len=131072,
                                **flags)).kv_bytes_per_token_per_device

    assert per_token(async_scheduling=False) == pytest.approx(8 * KIB * (10 * 131072 + 60 * (576 + 1) * 16) / 131072)
    assert per_token(hybrid_kv_cache=False) == 62 * 8 * KIB
    assert per_token(hybrid_kv_cache=False) > per_token() > per_token(async_scheduling=False)


def test_sliding_window_saves_nothing_when_the_prefill_chunk_covers_the_sequence():
    # What the MI300X log shows (kv_calibration.yaml): at 4,096 tokens with 8,192-token chunks every local
    # layer reserves the whole sequence and one block, so the window gives no concurrency; a smaller chunk does.
    def gemma(**extra):
        return estimate(request("google/gemma-3-27b-it", "nvidia-h200-141gb", max_model_len=4096, **extra))

    default, small_chunks = gemma(), gemma(max_num_batched_tokens=256)
    per_sequence = 16 * 10 * 8 * KIB * (256 + 6 * 257)  # blocks of ten layers: 256 global, 6 x 257 local
    assert default.sequences_at_max_model_len == pytest.approx(default.kv_cache_gib_per_device * GIB / per_sequence)
    # Two 256-token chunks in flight: 1,023 + 512 = 1,535 tokens, 96 blocks + 1, against 257.
    per_small = 16 * 10 * 8 * KIB * (256 + 6 * 97)
    assert small_chunks.sequences_at_max_model_len == pytest.approx(small_chunks.kv_cache_gib_per_device * GIB / per_small)
    assert small_chunks.sequences_at_max_model_len > 2 * default.sequences_at_max_model_len


@pytest.mark.parametrize("hf_id, group_size, full_groups, sliding_groups", [
    ("google/gemma-3-1b-it", 4, 1, 6),    # 4 global, 22 local: 2 padding layers
    ("google/gemma-3-4b-it", 5, 1, 6),    # 5 global, 29 local: 1 padding layer
    ("google/gemma-3-12b-it", 8, 1, 5),   # 8 global, 40 local: none
    ("google/gemma-3-27b-it", 10, 1, 6),  # 10 global, 52 local: 8, as vLLM logs ("Add 8 padding layers")
])
def test_hybrid_layout_groups_layers_as_vllm_does(hf_id, group_size, full_groups, sliding_groups):
    layout = hybrid_layout(CATALOG.model(hf_id))
    assert (layout.group_size, layout.full_groups, layout.sliding_groups) == (group_size, full_groups, sliding_groups)


def test_sliding_window_kept_only_where_vllm_keeps_it():
    # The hybrid KV cache manager (V1 on GPUs, vllm_defaults.yaml hybrid_kv_cache_since) stores only the window
    # of Gemma 3's local layers; V0, earlier V1 releases and TPU give every layer the whole sequence.
    def gemma(accelerator: str, devices: int = 1, **extra):
        return estimate(request("google/gemma-3-27b-it", accelerator, devices, max_model_len=32768, **extra))

    kept = gemma("nvidia-h200-141gb", vllm_version=(0, 32, 0))
    before = gemma("nvidia-h200-141gb", vllm_version=(0, 9, 2))
    assert kept.kv_bytes_per_token_per_device < before.kv_bytes_per_token_per_device == 62 * 8 * KIB
    # (10 x 32,768 + 60 x 17,424) layer-tokens a sequence against 62 x 32,768: 1.5 times as many sequences.
    assert kept.kv_capacity_tokens > 1.4 * before.kv_capacity_tokens
    assert before.largest_max_model_len == min(before.kv_capacity_tokens, 131072)
    tpu = gemma("tpu-v6e", 8, util=0.98)
    assert tpu.kv_bytes_per_token_per_device == 62 * 8 * KIB / 8  # 16 KV heads over 8 chips, every layer full
    since = CATALOG.scheduler.hybrid_kv_cache_since
    assert estimate(request("google/gemma-3-27b-it", "nvidia-h200-141gb", max_model_len=32768,
                            vllm_version=since)).kv_bytes_per_token_per_device < before.kv_bytes_per_token_per_device


def test_fp8_kv_cache_doubles_capacity_and_the_estimate_says_so_either_way():
    bf16 = estimate(request("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4"))
    fp8 = estimate(request("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4", kv_cache_dtype_bytes=1.0))
    assert fp8.kv_capacity_tokens == pytest.approx(2 * bf16.kv_capacity_tokens, abs=32)
    assert bf16.kv_capacity_tokens_fp8 == fp8.kv_capacity_tokens


def test_concurrency_at_typical_and_full_length():
    est = estimate(request("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4", typical_request_tokens=1024))
    assert est.sequences_at_typical_length == pytest.approx(4 * est.sequences_at_max_model_len)
    assert estimate(request("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4")).typical_request_tokens == 768


def test_cuda_graphs_count_only_where_vllm_profiles_them():
    old = estimate(request("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4", vllm_version=(0, 9, 2)))
    new = estimate(request("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4", vllm_version=(0, 32, 0)))
    eager = estimate(request("meta-llama/Llama-3.1-8B-Instruct", "nvidia-l4", vllm_version=(0, 32, 0), enforce_eager=True))
    assert new.overhead_gib_per_device == pytest.approx(old.overhead_gib_per_device + 0.5)
    assert eager.overhead_gib_per_device == pytest.approx(old.overhead_gib_per_device)


def test_weight_override_for_quantized_checkpoints():
    est = estimate(request("meta-llama/Llama-3.1-70B-Instruct", "nvidia-a100-80gb", weight_bytes_per_param=0.5))
    assert est.weights_gib_per_device == pytest.approx(70.6e9 * 0.5 / GIB)
    assert est.weights_fit


def test_context_beyond_model_limit_does_not_fit():
    est = estimate(request("google/gemma-3-1b-it", "nvidia-h100-80gb", max_model_len=65536))
    assert est.weights_fit and not est.context_fits


def test_vllm_scheduler_defaults():
    assert default_max_num_batched_tokens(request("meta-llama/Llama-3.1-8B", "nvidia-l4")) == 2048
    assert default_max_num_batched_tokens(request("meta-llama/Llama-3.1-8B", "nvidia-h100-80gb")) == 8192
    assert default_max_num_seqs(request("meta-llama/Llama-3.1-8B", "nvidia-l4")) == 256
    assert default_max_num_seqs(request("meta-llama/Llama-3.1-8B", "nvidia-h100-80gb")) == 1024
    v0 = request("meta-llama/Llama-3.2-11B-Vision", "nvidia-a100-80gb", max_model_len=8192)
    assert default_max_num_batched_tokens(v0) == 8192 and default_max_num_seqs(v0) == 256
    assert estimate(dataclasses.replace(v0, max_num_seqs=None)).max_num_seqs == 256


@pytest.mark.parametrize("accelerator, memory_gib, version, tier, seqs, tokens", [
    ("nvidia-l4", None, None, "small", 256, 2048),
    ("nvidia-h100-80gb", None, None, "large", 1024, 8192),
    ("nvidia-h200-141gb", None, None, "large", 1024, 8192),
    # 80 GB, but vLLM keeps A100s on the small defaults (vllm-project/vllm#17885).
    ("nvidia-a100-80gb", None, None, "small", 256, 2048),
    ("nvidia-tesla-a100", None, None, "small", 256, 2048),
    # A 180 GiB device: the largest defaults on the pinned release, the large ones before it.
    ("nvidia-h200-141gb", 180, None, "huge", 1024, 16384),
    ("nvidia-h200-141gb", 180, (0, 11, 0), "large", 1024, 8192),
])
def test_device_tiers_follow_vllm_batch_defaults(accelerator, memory_gib, version, tier, seqs, tokens):
    req = request("meta-llama/Llama-3.1-8B-Instruct", accelerator, vllm_version=version,
                  device_memory_bytes=memory_gib and memory_gib * GIB)
    assert (device_tier(req), default_max_num_seqs(req), default_max_num_batched_tokens(req)) == (tier, seqs, tokens)


def test_as_dict():
    data = estimate(request("meta-llama/Llama-3.1-8B", "nvidia-l4")).as_dict()
    assert {"weights_gib_per_device", "kv_capacity_tokens", "context_fits", "largest_max_model_len",
            "sequences_at_typical_length", "kv_capacity_tokens_fp8"} <= set(data)


def test_invalid_request():
    with pytest.raises(ValueError, match="devices"):
        request("meta-llama/Llama-3.1-8B", "nvidia-l4", 0)
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        request("meta-llama/Llama-3.1-8B", "nvidia-l4", util=1.5)


def test_suggest_gpu_memory_utilization():
    for key in ("nvidia-l4", "nvidia-h100-80gb"):
        assert suggest_gpu_memory_utilization(CATALOG.accelerators[key]) == 0.90
    # The TPU backend's published v6e recipe runs at 0.98 (stacks/catalog/data/vllm_defaults.yaml).
    assert suggest_gpu_memory_utilization(CATALOG.accelerators["tpu-v6e"]) == CATALOG.tpu_v6e.gpu_memory_utilization == 0.98
