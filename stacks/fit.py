"""Will a model fit: a pre-deployment estimate of vLLM's device-memory budget.

vLLM sizes its KV cache at start-up (V1 ``vllm/v1/worker/gpu_worker.py`` ``determine_available_memory`` and
``vllm/utils`` ``memory_profiling``; per-token KV size from ``vllm/v1/kv_cache_interface.py``)::

    budget        = gpu_memory_utilization x total device memory      (per device, total not free)
    non_kv        = weights / TP                                      (weights, sharded)
                  + activation peak of the profile run at max_num_batched_tokens
                  + non-torch memory (cuBLAS workspaces, NCCL buffers when TP > 1)
                  + CUDA-graph pool (newer vLLM profiles it; it always has to fit somewhere)
                  + sampler warm-up (fp32 logits for max_num_seqs rows)
                  + vision encoder activations (vision models)
    kv_memory     = budget - non_kv
    kv_capacity   = kv_memory / KV bytes per token per device

KV bytes per token and layer are ``2 x kv_heads x head_dim x dtype`` (vllm/v1/kv_cache_interface.py).
With tensor parallelism each device holds ``max(1, kv_heads / TP)`` heads (heads are replicated when
there are fewer than TP). Gemma 3's sliding-window layers keep only ``window`` tokens of a sequence
(V1 hybrid KV manager), so what one sequence of length L needs is
``(full_layers x L + local_layers x min(window, L)) x bytes per layer-token``; the largest servable
length is found by search on that, as vLLM's ``estimate_max_model_len`` does. Llama 3.2 Vision only runs
on the V0 encoder-decoder runner (vLLM <= 0.10), whose cache blocks span all decoder layers, the
cross-attention ones included (40 for 11B), so its per-token cost counts them.

TPU v6e uses the same shape with 31.25 GiB HBM per chip, no CUDA graphs and no NCCL.

Constants, and where they come from. They are order-of-magnitude estimates of what vLLM measures at
start-up; the tests check the sum against a logged start-up (tests/test_fit.py, tolerance stated there):

- ``ACTIVATION_COEFF_REPLICATED = 4``, ``ACTIVATION_COEFF_SHARDED = 8``: the profile run's activation
  peak is about ``max_num_batched_tokens x hidden x 2 bytes x (4 + 8 / TP)``: residual stream, norms and
  attention output are whole on every device; QKV and the gate/up MLP projections (3.5 x hidden wide
  for Llama) are split by TP. Physical reasoning, not a fit.
- ``NON_TORCH_GIB = 0.25``: cuBLAS/cuDNN workspaces and allocator slack seen as "non-torch" memory.
- ``TP_COMM_GIB = 0.5``: NCCL and custom all-reduce buffers per device when TP > 1 (hedge).
- ``CUDA_GRAPH_GIB = 0.5``: "Graph capturing finished in 5 secs, took 0.55 GiB" for a Llama-8B-sized
  model on vLLM 0.15.1 (public start-up log); zero with --enforce-eager and on TPU.
- ``SAMPLER_BYTES = 8``: fp32 logits plus probabilities per vocabulary entry for each of max_num_seqs
  dummy requests in the sampler warm-up (vLLM logs "CUDA out of memory occurred when warming up sampler
  with 256 dummy requests" when this does not fit).
- Vision encoders: ``VisionEncoderSpec`` in stacks/catalog/data/models.yaml (activation bytes per image). V0
  (Llama 3.2 Vision) runs one image per dummy sequence inside the profiled forward pass, so the encoder
  peak adds up and scales with max_num_seqs; V1 profiles the encoder separately on as many images as
  fit in the encoder budget (max_num_batched_tokens), so the peak is the larger of the encoder and the
  decoder pass. Encoder weights are part of ``params_billion``.
- Default ``max_num_batched_tokens`` when not given: vLLM V1's OpenAI-server defaults, 8192 on devices
  with at least 70 GiB and 2048 below (``EngineArgs._set_default_args``, hedge: read from the source
  of recent releases); V0 encoder-decoder models: ``max(max_model_len, 2048)`` (no chunked prefill).

Not modelled: LoRA buffers (--enable-lora), speculative decoding, other processes on the device, the
CUDA context itself (about 0.5 GiB, outside vLLM's budget: the reason utilization stays below 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from stacks.catalog import AcceleratorSpec, ModelSpec

GIB = 2**30
BLOCK_SIZE = 16  # vLLM's default KV block size on GPU: capacities are whole blocks

ACTIVATION_COEFF_REPLICATED = 4.0
ACTIVATION_COEFF_SHARDED = 8.0
NON_TORCH_GIB = 0.25
TP_COMM_GIB = 0.5
CUDA_GRAPH_GIB = 0.5
SAMPLER_BYTES = 8

LARGE_DEVICE_GIB = 70  # vLLM picks larger scheduler defaults on devices at least this big
DEFAULT_BATCHED_TOKENS_LARGE = 8192
DEFAULT_BATCHED_TOKENS_SMALL = 2048

GPU_MEMORY_UTILIZATION = 0.90  # see suggest_gpu_memory_utilization
TYPICAL_FILL = 0.25  # suggest_max_num_seqs: sequences are assumed to use a quarter of max_model_len
V0_VISION_MAX_NUM_SEQS = 12  # the Vertex AI tutorial: 256 OOMs Llama 3.2 11B Vision on an A100 40GB, 12 works


@dataclass(frozen=True)
class FitRequest:
    """One vLLM instance: a model sharded over ``devices`` accelerators (= tensor parallel size)."""

    model: ModelSpec
    accelerator: AcceleratorSpec
    devices: int
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int | None = None  # None: vLLM's default for the model and device (see module doc)
    kv_cache_dtype_bytes: float = 2.0
    weight_bytes_per_param: float | None = None  # override for quantized weights; None: the model's
    enforce_eager: bool = False  # True: no CUDA graphs (no graph pool)

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError(f"devices must be at least 1, got {self.devices}.")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}.")
        if self.max_model_len < 1 or self.max_num_seqs < 1:
            raise ValueError("max_model_len and max_num_seqs must be at least 1.")


@dataclass(frozen=True)
class FitEstimate:
    weights_gib_per_device: float
    budget_gib_per_device: float  # utilization x device memory
    overhead_gib_per_device: float  # activations + runtime: CUDA graphs, NCCL, sampler, vision encoder
    kv_cache_gib_per_device: float
    kv_bytes_per_token_per_device: float  # averaged over a sequence of max_model_len tokens
    kv_capacity_tokens: int
    largest_max_model_len: int  # longest single sequence the KV cache holds, capped by the model's context
    sequences_at_max_model_len: float  # how many max_model_len sequences fit at once
    weights_fit: bool  # weights and overhead leave room for a KV cache
    context_fits: bool  # one sequence of max_model_len fits (and the model supports that length)

    def as_dict(self) -> dict:
        return asdict(self)


def default_max_num_batched_tokens(req: FitRequest) -> int:
    """vLLM's default token budget per step for this request (see the module doc)."""
    if _v0_encoder_decoder(req.model):
        return max(req.max_model_len, DEFAULT_BATCHED_TOKENS_SMALL)
    large = req.accelerator.memory_bytes >= LARGE_DEVICE_GIB * GIB
    return DEFAULT_BATCHED_TOKENS_LARGE if large else DEFAULT_BATCHED_TOKENS_SMALL


def _v0_encoder_decoder(model: ModelSpec) -> bool:
    encoder = model.vision_encoder
    return bool(model.cross_attention_layers) and encoder is not None and encoder.profile_scaling == "per_sequence"


def _kv_heads_per_device(model: ModelSpec, devices: int) -> int:
    return max(1, model.num_kv_heads // devices)


def _layer_token_bytes(req: FitRequest) -> float:
    """KV bytes for one token in one layer on one device."""
    return req.model.kv_bytes_per_layer_token(req.kv_cache_dtype_bytes, _kv_heads_per_device(req.model, req.devices))


def _sequence_kv_bytes(req: FitRequest, length: int) -> float:
    """KV bytes one sequence of ``length`` tokens needs on one device."""
    model = req.model
    local = model.sliding_window_layers if model.sliding_window else 0
    full = model.num_layers - local
    if _v0_encoder_decoder(model):
        full += model.cross_attention_layers  # V0 blocks span the cross-attention layers too
    kept = min(model.sliding_window, length) if local and model.sliding_window else 0
    return (full * length + local * kept) * _layer_token_bytes(req)


def _overhead_bytes(req: FitRequest, batched_tokens: int) -> float:
    model, acc, tp = req.model, req.accelerator, req.devices
    coeff = ACTIVATION_COEFF_REPLICATED + ACTIVATION_COEFF_SHARDED / tp
    activations = batched_tokens * model.hidden_size * 2 * coeff
    runtime = NON_TORCH_GIB * GIB
    if tp > 1 and acc.kind == "gpu":
        runtime += TP_COMM_GIB * GIB
    if acc.kind == "gpu" and not req.enforce_eager:
        runtime += CUDA_GRAPH_GIB * GIB
    sampler = req.max_num_seqs * model.vocab_size * SAMPLER_BYTES
    enc = model.vision_encoder
    if enc is None:
        return activations + runtime + sampler
    if enc.profile_scaling == "per_sequence":
        # V0: the encoder runs inside the profiled forward pass, one image per dummy sequence.
        return activations + runtime + sampler + req.max_num_seqs * enc.activation_bytes_per_item / tp
    # V1 profiles the encoder (a batch filling the encoder budget) apart from the decoder pass:
    # the peak is the larger of the two, not their sum.
    images = max(1, batched_tokens // enc.tokens_per_item)
    return max(activations, images * enc.activation_bytes_per_item / tp) + runtime + sampler


def _largest_length(req: FitRequest, kv_bytes: float) -> int:
    """Longest sequence whose KV fits in ``kv_bytes`` (binary search, like vLLM's estimate_max_model_len)."""
    if kv_bytes <= 0 or _sequence_kv_bytes(req, 1) > kv_bytes:
        return 0
    low, high = 1, req.model.max_context
    if _sequence_kv_bytes(req, high) <= kv_bytes:
        return high
    while low < high:
        mid = (low + high + 1) // 2
        if _sequence_kv_bytes(req, mid) <= kv_bytes:
            low = mid
        else:
            high = mid - 1
    return low


def estimate(req: FitRequest) -> FitEstimate:
    """Per-device memory estimate for ``req`` (formula and constants in the module doc)."""
    model = req.model
    bytes_per_param = req.weight_bytes_per_param or model.weight_bytes_per_param
    weights = model.params_billion * 1e9 * bytes_per_param / req.devices
    budget = req.gpu_memory_utilization * req.accelerator.memory_bytes
    batched = req.max_num_batched_tokens or default_max_num_batched_tokens(req)
    overhead = _overhead_bytes(req, batched)
    kv_bytes = budget - weights - overhead

    per_token = _sequence_kv_bytes(req, req.max_model_len) / req.max_model_len
    usable = max(kv_bytes, 0.0)
    blocks = math.floor(usable / (per_token * BLOCK_SIZE))
    largest = _largest_length(req, usable)
    weights_fit = kv_bytes > 0
    return FitEstimate(
        weights_gib_per_device=weights / GIB,
        budget_gib_per_device=budget / GIB,
        overhead_gib_per_device=overhead / GIB,
        kv_cache_gib_per_device=kv_bytes / GIB,
        kv_bytes_per_token_per_device=per_token,
        kv_capacity_tokens=blocks * BLOCK_SIZE,
        largest_max_model_len=largest,
        sequences_at_max_model_len=usable / _sequence_kv_bytes(req, req.max_model_len),
        weights_fit=weights_fit,
        context_fits=weights_fit and req.max_model_len <= model.max_context and largest >= req.max_model_len,
    )


def suggest_max_num_seqs(req: FitRequest, cap: int = 256) -> int:
    """The largest max_num_seqs (at most ``cap``) whose KV cache holds every sequence at a typical fill.

    Rule: each of the N sequences is assumed to hold ``TYPICAL_FILL`` (a quarter) of max_model_len;
    N is the largest value for which N such sequences fit in the KV cache left after the overhead for N
    (the sampler warm-up and, for V0 vision models, the encoder profile grow with N). Llama 3.2 Vision
    (V0 encoder-decoder) is further capped at 12, the value the Vertex AI tutorial found to work on an A100 40GB after
    256 ran out of memory. Returns at least 1 even when nothing fits; ``estimate`` says whether it does.
    """
    if _v0_encoder_decoder(req.model):
        cap = min(cap, V0_VISION_MAX_NUM_SEQS)
    typical = max(1, math.ceil(req.max_model_len * TYPICAL_FILL))
    for n in range(max(1, cap), 0, -1):
        trial = FitRequest(**{**_fields(req), "max_num_seqs": n})
        est = estimate(trial)
        if est.kv_cache_gib_per_device * GIB >= n * _sequence_kv_bytes(trial, typical):
            return n
    return 1


def suggest_gpu_memory_utilization(accelerator: AcceleratorSpec) -> float:
    """0.90 on GPUs and TPUs.

    0.9 is vLLM's long-standing default and what every tutorial and Model Garden example runs with; the
    remaining tenth covers the CUDA context (outside vLLM's accounting), graphs captured after profiling
    on older releases, and fragmentation. No public source establishes that a higher value is safe on
    TPU v6e (XLA compiles more programs after the KV cache is allocated), so TPUs get the same value.
    """
    return GPU_MEMORY_UTILIZATION


def _fields(req: FitRequest) -> dict:
    return {name: getattr(req, name) for name in FitRequest.__dataclass_fields__}
