"""Will a model fit: a pre-deployment estimate of vLLM's device-memory budget.

vLLM sizes its KV cache at start-up by profiling (V0 ``Worker.determine_num_available_blocks``,
V1 ``gpu_worker.determine_available_memory``)::

    budget      = gpu_memory_utilization x total device memory          (per device; total as CUDA reports it)
    non_kv      = weights / TP
                + torch peak of the profile run, the largest of
                    - the decoder's forward pass over max_num_batched_tokens dummy tokens,
                    - the sampler warm-up over the whole vocabulary for min(max_num_seqs,
                      max_num_batched_tokens) rows (8 bytes an entry on V0, 38 on V1: below),
                    - the vision encoder's profiling (below)
                + non-torch memory (cuBLAS workspaces, allocator slack; NCCL buffers when TP > 1)
                + the CUDA-graph pool, only from the release that profiles it (vllm_defaults.yaml)
    kv_memory   = budget - non_kv
    kv_tokens   = floor(kv_memory / (KV bytes per token x 16)) x 16     (whole blocks, as "GPU KV cache size")

KV bytes per token and layer are ``2 x kv_heads x head_dim x dtype`` (vllm/v1/kv_cache_interface.py),
with ``max(1, kv_heads / TP)`` heads per device. Where vLLM's hybrid KV cache manager runs (V1 on GPUs,
from the release in vllm_defaults.yaml ``hybrid_kv_cache_since``), sliding-window layers (Gemma 3: 5 of
every 6) free what falls out of the window, and vLLM reserves for one sequence of length L what it admits
it with (vllm/v1/kv_cache_interface.py ``SlidingWindowSpec.max_admission_blocks_per_request``,
vllm/v1/core/kv_cache_utils.py ``get_max_concurrency_for_kv_cache_config``):

- layers are grouped by kind; the group size is the smaller kind's count (or the larger one's when the
  two are within 1.5x), each kind spread over ``ceil(count / size)`` groups, and a block holds one page
  of ``size`` layers whatever its group holds: Gemma 3 27B's 52 local layers take six groups beside one
  of ten global layers, as if 60 ("Add 8 padding layers"); padding takes memory;
- a global group needs ``ceil(L / 16)`` blocks; a local group ``ceil(min(window - 1 + in_flight, L) / 16) + 1``:
  the window behind the newest token plus the tokens scheduled but not yet settled, and one block more
  because the window need not start on a block boundary. ``in_flight`` is ``max_num_batched_tokens`` for
  each batch in flight: one, or two under async scheduling from the release in vllm_defaults.yaml
  ``two_batches_in_flight_since`` (the pinned 0.32.0). With 8,192-token chunks a 4,096-token sequence saves
  nothing (the MI300X log in the calibration file: 50x, not the 150x ``min(window, L)`` would give);
  tests/integration/test_fit_against_vllm.py checks the result against the pinned release's own code;
- a block is 16 tokens of every layer in a group.

The longest servable length is found by search on that, as vLLM's ``estimate_max_model_len`` does, against
the KV memory less one block (V1's block pool holds a null block back, and the pinned release's check
leaves it out); what the
estimate reports as KV tokens is concurrency x max_model_len, as the pinned vLLM logs it. Everywhere else
(V0, V1 before that release, TPU) every layer gets blocks for the whole sequence, and a sliding-window model
needs as much KV cache per token as a full-attention one of its shape. Llama 3.2 Vision runs only on the
V0 encoder-decoder runner (vLLM <= 0.10), whose blocks span all 40 decoder layers of the 11B model, the
cross-attention ones included.

The decoder's activation peak is the MLP of one layer: per token, the gate/up projection output
(2 x intermediate / TP), the activation output (intermediate / TP) and about three hidden-size vectors
(residual, normed input, output), all bf16: ``2 bytes x (3 x intermediate / TP + 3 x hidden)``.
For Llama 3.1 8B that is 108 KiB a token; vLLM logged a torch peak of 17.06 GiB over 14.99 GiB of
weights for 20,000 batched tokens (vllm-project/vllm#10517): 2.07 GiB, 108.5 KiB a token.

The vision encoder's profiling run (``VisionEncoderSpec`` in models.yaml):

- V0 encoder-decoder (Llama 3.2 Vision on the Model Garden image): every one of max_num_seqs dummy
  sequences carries an image of 4 tiles, and the encoder runs them in one batch, so its peak is
  ``max_num_seqs x activation_bytes_per_item / TP``. This is why max_num_seqs 256 runs the 11B model out
  of memory on an A100 40GB (the Vertex tutorial: "Tried to allocate 3.91 GiB" = 256 images x 4 tiles x
  1601 patches x 1280 x 2 bytes, one encoder hidden state) and 12 starts.
- V1 (Gemma 3): the encoder is profiled on as many images as fill the encoder budget
  (``max_num_batched_tokens / tokens_per_item``, at least one), independent of max_num_seqs.

Constants, each a measurement or a stated estimate:

- ``NON_TORCH_GIB = 0.3``: logged non-torch memory is 0.05-0.35 GiB on one device
  (vllm-project/vllm#10517: 0.35 GiB; a V0 0.7 log in oracle-samples/oci-data-science-ai-samples
  ai-quick-actions/troubleshooting-tips.md: 0.05 GiB); the V1 A100 40GB log of github.com/ilseokoh/vllm-gce
  leaves 0.33 GiB beside weights and activations.
- ``TP_COMM_GIB = 0.5``: NCCL and custom all-reduce buffers per device when TP > 1 (hedge).
- ``CUDA_GRAPH_GIB = 0.5``: "Graph capturing finished in 5 secs, took 0.55 GiB" for a Llama-8B-sized
  model (github.com/ilseokoh/vllm-gce); counted only when the pinned vLLM profiles graphs, never with
  --enforce-eager or on TPU.
- Sampler warm-up, bytes per vocabulary entry for each of ``min(max_num_seqs, max_num_batched_tokens)``
  rows: ``SAMPLER_BYTES_V0 = 8`` (fp32 logits plus probabilities; the V0 0.7 A10 log above puts the whole
  activation peak at 0.22 GiB with 256 rows of Llama's 128,256 entries, 7 bytes each at most) and
  ``SAMPLER_BYTES_V1 = 38`` (V1's dummy sampler run applies top-k and top-p to fp32 logits: sorted values
  4 + indices 8 + softmax 4 + cumulative sum 4 + masks 2 + values and indices scattered back 4 + 8, plus the
  logits 4). Measured on an H100 with vLLM 0.11 and 1,024 rows (llm-d/llm-d-benchmark
  config_explorer/empirical-vllm-memory-results.md): torch peaks of 4.76 GiB for Llama 3.1 8B and 4.84 GiB
  for Llama 3.3 70B at TP 2 (128,256 entries), 5.56 GiB for Qwen3 0.6B and 5.64 GiB for Qwen3 32B
  (151,936): 37.6-39.6 bytes an entry whatever the model's size or TP, so the sampler, not the forward
  pass, sets the peak on V1. TPU keeps the V0 figure (hedge: no TPU log found).
- vLLM's defaults for max_num_seqs and max_num_batched_tokens, and the release from which CUDA graphs
  are profiled: stacks/catalog/data/vllm_defaults.yaml, with sources.

Calibration: tests/stacks/data/kv_calibration.yaml holds public start-up logs (model, device, vLLM version,
settings, the logged lines, the source); tests/stacks/test_fit.py requires the estimate within 10% of every
logged figure: thirteen logs, V0 and V1 (Llama 2 7B, Llama 3/3.1 8B, Llama 3.3 70B FP8, Qwen3 0.6B and 32B,
Mistral Small 3.2 24B with its vision encoder, Gemma 3 27B with its sliding window on V1's hybrid KV cache
manager) on A100 40/80GB, H100 (TP 1 and 2), RTX 3090, A10 and MI300X, from -9.7% to +3.6% (the Gemma 3
log: KV memory, concurrency and logged KV size, each +1.9%). It requires vLLM's verdict where the KV cache
left is too small a share of the budget for 10% to mean anything (the Vertex tutorial's Llama 3.2 11B
Vision on an A100 40GB: 4096 refused, 2048 accepted), and keeps one known miss visible (Gemma 2 9B on
8 x L4, vLLM 0.5.4, +11%, flags not shown in the log). It also reproduces the tutorial's other failure:
256 sequences of the 11B Vision model do not fit, 12 do.

Not modelled: LoRA buffers (--enable-lora), speculative decoding, other processes on the device, the
CUDA context (outside vLLM's budget from 0.6.4 on: the reason utilization stays below 1).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

from stacks.catalog import CATALOG, AcceleratorSpec, ModelSpec, Version

GIB = 2**30
BLOCK_SIZE = 16  # vLLM's default KV block size on GPU: capacities are whole blocks

NON_TORCH_GIB = 0.3
TP_COMM_GIB = 0.5
CUDA_GRAPH_GIB = 0.5
SAMPLER_BYTES_V0 = 8
SAMPLER_BYTES_V1 = 38
HYBRID_GROUP_SIZE_RATIO = 1.5  # vLLM groups by the larger kind when the two are this close in number
MLP_WIDTH_FALLBACK = 3.5  # intermediate / hidden when a model does not give its MLP width (Llama's ratio)

GPU_MEMORY_UTILIZATION = 0.90  # see suggest_gpu_memory_utilization
# What a typical request holds (prompt + output) when a deployment does not say: the measured workload
# of the README's "Serving defaults" (512 prompt + 256 output tokens).
DEFAULT_TYPICAL_REQUEST_TOKENS = 768


@dataclass(frozen=True)
class FitRequest:
    """One vLLM instance: a model sharded over ``devices`` accelerators (= tensor parallel size)."""

    model: ModelSpec
    accelerator: AcceleratorSpec
    devices: int
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int | None = None  # None: vLLM's default for the engine and device
    max_num_batched_tokens: int | None = None  # None: vLLM's default (see default_max_num_batched_tokens)
    kv_cache_dtype_bytes: float = 2.0
    weight_bytes_per_param: float | None = None  # override for quantized weights; None: the model's
    enforce_eager: bool = False  # True: no CUDA graphs (no graph pool)
    vllm_version: Version | None = None  # None: a current release (V1, CUDA graphs profiled)
    typical_request_tokens: int = DEFAULT_TYPICAL_REQUEST_TOKENS
    device_memory_bytes: int | None = None  # override for a device reported differently (calibration logs)
    # vLLM flags a deployment may pass in extraArgs that change what a sequence reserves:
    hybrid_kv_cache: bool = True  # False: --disable-hybrid-kv-cache-manager (every layer holds the whole sequence)
    async_scheduling: bool = True  # False: --no-async-scheduling (one batch in flight)

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError(f"devices must be at least 1, got {self.devices}.")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}.")
        if self.max_model_len < 1 or (self.max_num_seqs is not None and self.max_num_seqs < 1):
            raise ValueError("max_model_len and max_num_seqs must be at least 1.")
        if self.typical_request_tokens < 1:
            raise ValueError("typical_request_tokens must be at least 1.")


@dataclass(frozen=True)
class FitEstimate:
    weights_gib_per_device: float
    budget_gib_per_device: float  # utilization x device memory
    overhead_gib_per_device: float  # profile-run peak + non-torch + CUDA graphs (when profiled)
    encoder_gib_per_device: float  # the vision encoder's share of the profile-run peak (0 for text models)
    kv_cache_gib_per_device: float  # negative when weights and overhead exceed the budget
    kv_bytes_per_token_per_device: float  # averaged over a sequence of max_model_len tokens
    kv_capacity_tokens: int  # what vLLM logs as "GPU KV cache size" / blocks x 16
    kv_capacity_tokens_fp8: int  # the same memory with --kv-cache-dtype fp8
    largest_max_model_len: int  # longest single sequence the KV cache holds, capped by the model's context
    sequences_at_max_model_len: float  # full-length sequences that fit at once
    typical_request_tokens: int
    sequences_at_typical_length: float  # typical requests whose KV fits at once (the scheduler admits by blocks)
    max_num_seqs: int  # what vLLM runs with: the deployment's value or vLLM's default
    max_num_batched_tokens: int
    needed_gib_per_device: float  # weights + overhead + one max_model_len sequence
    weights_fit: bool  # weights and overhead leave room for a KV cache
    context_fits: bool  # one sequence of max_model_len fits (and the model supports that length)

    def as_dict(self) -> dict:
        return asdict(self)


def engine(req: FitRequest) -> str:
    """Which vLLM code path profiles memory: "v0", "v1" or "tpu"."""
    if req.accelerator.kind == "tpu":
        return "tpu"
    if _v0_encoder_decoder(req.model):
        return "v0"
    if req.vllm_version is not None and req.vllm_version < CATALOG.scheduler.v1_default_since:
        return "v0"
    return "v1"


def device_tier(req: FitRequest) -> str:
    """Which of vLLM's V1 scheduler defaults a device gets: "huge", "large" or "small" (vllm_defaults.yaml,
    vLLM's ``EngineArgs.get_batch_defaults``: by device memory, A100s always small)."""
    sched = CATALOG.scheduler
    memory = _device_bytes(req)
    if memory >= sched.huge_device_gib * GIB and (req.vllm_version is None or req.vllm_version >= sched.huge_device_since):
        return "huge"
    name = req.accelerator.key.lower()
    if memory >= sched.large_device_gib * GIB and not any(word in name for word in sched.large_device_name_excludes):
        return "large"
    return "small"


def _device_bytes(req: FitRequest) -> int:
    return req.device_memory_bytes or req.accelerator.memory_bytes


def default_max_num_seqs(req: FitRequest) -> int:
    """vLLM's own max_num_seqs for this engine and device (vllm_defaults.yaml)."""
    sched = CATALOG.scheduler
    kind = engine(req)
    if kind == "tpu":
        return sched.tpu_max_num_seqs
    if kind == "v0":
        return sched.v0_max_num_seqs
    return sched.v1_max_num_seqs[device_tier(req)]


def default_max_num_batched_tokens(req: FitRequest) -> int:
    """vLLM's default token budget per step (V0 without chunked prefill: at least max_model_len)."""
    sched = CATALOG.scheduler
    kind = engine(req)
    if kind == "tpu":
        return sched.tpu_max_num_batched_tokens
    if kind == "v0":
        return max(req.max_model_len, sched.v0_min_num_batched_tokens)
    return sched.v1_max_num_batched_tokens[device_tier(req)]


def effective_max_num_seqs(req: FitRequest) -> int:
    return req.max_num_seqs or default_max_num_seqs(req)


def _v0_encoder_decoder(model: ModelSpec) -> bool:
    encoder = model.vision_encoder
    return bool(model.cross_attention_layers) and encoder is not None and encoder.profile_scaling == "per_sequence"


def _kv_heads_per_device(model: ModelSpec, devices: int) -> int:
    return max(1, model.num_kv_heads // devices)


def _layer_token_bytes(req: FitRequest) -> float:
    """KV bytes for one token in one layer on one device."""
    return req.model.kv_bytes_per_layer_token(req.kv_cache_dtype_bytes, _kv_heads_per_device(req.model, req.devices))


def window_kept(req: FitRequest) -> bool:
    """Whether vLLM keeps only the window of sliding-window layers (its hybrid KV cache manager, module doc)."""
    model = req.model
    if not (model.sliding_window and model.sliding_window_layers):
        return False
    if req.accelerator.kind != "gpu" or engine(req) != "v1" or not req.hybrid_kv_cache:
        return False
    return req.vllm_version is None or req.vllm_version >= CATALOG.scheduler.hybrid_kv_cache_since


@dataclass(frozen=True)
class HybridLayout:
    """How vLLM's hybrid KV cache manager groups a sliding-window model's layers (module doc)."""

    group_size: int  # layers whose pages share one block
    full_groups: int
    sliding_groups: int  # the last one padded to group_size: padding layers take memory too


def hybrid_layout(model: ModelSpec) -> HybridLayout:
    """Groups of equal size, each of one attention kind; the smaller kind sets the size, padding the other."""
    full = model.num_layers - model.sliding_window_layers
    local = model.sliding_window_layers
    if full == 0:
        return HybridLayout(group_size=local, full_groups=0, sliding_groups=1)
    size = min(full, local)
    if max(full, local) < size * HYBRID_GROUP_SIZE_RATIO:
        size = max(full, local)
    return HybridLayout(group_size=size, full_groups=-(-full // size), sliding_groups=-(-local // size))


def _batches_in_flight(req: FitRequest) -> int:
    """Batches scheduled but not yet settled: two under async scheduling, vLLM's default (vllm_defaults.yaml)."""
    since = CATALOG.scheduler.two_batches_in_flight_since
    return 2 if req.async_scheduling and (req.vllm_version is None or req.vllm_version >= since) else 1


def block_bytes(req: FitRequest) -> float:
    """One block of the pool on one device: 16 tokens of every layer a block spans (module doc): a hybrid
    model's group, or every layer (V0 encoder-decoder blocks span the cross-attention layers too)."""
    if window_kept(req):
        layers = hybrid_layout(req.model).group_size
    else:
        layers = req.model.num_layers
        if _v0_encoder_decoder(req.model):
            layers += req.model.cross_attention_layers
    return BLOCK_SIZE * layers * _layer_token_bytes(req)


def _blocks(tokens: int) -> int:
    return -(-tokens // BLOCK_SIZE)


def _sequence_kv_bytes(req: FitRequest, length: int) -> float:
    """KV bytes vLLM reserves for one sequence of ``length`` tokens on one device (module doc)."""
    model = req.model
    if not window_kept(req):
        return length * block_bytes(req) / BLOCK_SIZE  # every layer holds the whole sequence
    layout = hybrid_layout(model)
    in_flight = (req.max_num_batched_tokens or default_max_num_batched_tokens(req)) * _batches_in_flight(req)
    # A sliding-window layer holds the window behind the newest token plus the chunks scheduled but not
    # yet settled, never more than the sequence, and one block more: the window need not start on a block.
    window = model.sliding_window or length  # set: window_kept() requires it
    window_tokens = min(window - 1 + in_flight, length)
    blocks = layout.full_groups * _blocks(length) + layout.sliding_groups * (_blocks(window_tokens) + 1)
    return blocks * block_bytes(req)


def activation_bytes(req: FitRequest, batched_tokens: int) -> float:
    """Peak of the decoder's forward pass over ``batched_tokens`` tokens on one device (module doc)."""
    model = req.model
    intermediate = model.intermediate_size or MLP_WIDTH_FALLBACK * model.hidden_size
    return batched_tokens * 2 * (3 * intermediate / req.devices + 3 * model.hidden_size)


def encoder_bytes(req: FitRequest, batched_tokens: int) -> float:
    """Peak of the vision encoder's profiling run on one device (module doc)."""
    enc = req.model.vision_encoder
    if enc is None:
        return 0.0
    if enc.profile_scaling == "per_sequence":
        images = effective_max_num_seqs(req)
    else:
        images = max(1, batched_tokens // enc.tokens_per_item)
    return images * enc.activation_bytes_per_item / req.devices


def sampler_bytes(req: FitRequest, batched_tokens: int) -> float:
    """Peak of the sampler warm-up on one device (module doc): every rank samples over the whole vocabulary."""
    rows = min(effective_max_num_seqs(req), batched_tokens)
    per_entry = SAMPLER_BYTES_V1 if engine(req) == "v1" else SAMPLER_BYTES_V0
    return rows * req.model.vocab_size * per_entry


def _cuda_graphs_profiled(req: FitRequest) -> bool:
    if req.accelerator.kind != "gpu" or req.enforce_eager or engine(req) == "v0":
        return False
    return req.vllm_version is None or req.vllm_version >= CATALOG.scheduler.cuda_graphs_profiled_since


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


def _whole_blocks(kv_bytes: float, per_token: float) -> int:
    return math.floor(max(kv_bytes, 0.0) / (per_token * BLOCK_SIZE)) * BLOCK_SIZE


def estimate(req: FitRequest) -> FitEstimate:
    """Per-device memory estimate for ``req`` (formula, constants and sources in the module doc)."""
    model = req.model
    bytes_per_param = req.weight_bytes_per_param or model.weight_bytes_per_param
    weights = model.params_billion * 1e9 * bytes_per_param / req.devices
    budget = req.gpu_memory_utilization * _device_bytes(req)
    batched = req.max_num_batched_tokens or default_max_num_batched_tokens(req)
    seqs = effective_max_num_seqs(req)

    encoder = encoder_bytes(req, batched)
    torch_peak = max(activation_bytes(req, batched), sampler_bytes(req, batched), encoder)
    runtime = NON_TORCH_GIB * GIB
    if req.devices > 1 and req.accelerator.kind == "gpu":
        runtime += TP_COMM_GIB * GIB
    if _cuda_graphs_profiled(req):
        runtime += CUDA_GRAPH_GIB * GIB
    overhead = torch_peak + runtime
    kv_bytes = budget - weights - overhead

    full_sequence = _sequence_kv_bytes(req, req.max_model_len)
    per_token = full_sequence / req.max_model_len
    usable = max(kv_bytes, 0.0)
    capacity = _whole_blocks(kv_bytes, per_token)
    # V1 checks a sequence against the pool less the null block its BlockPool holds back.
    checked = max(usable - (block_bytes(req) if engine(req) == "v1" else 0.0), 0.0)
    largest = _largest_length(req, checked)
    if not window_kept(req):
        largest = min(largest, _whole_blocks(checked, per_token))  # vLLM accepts whole blocks
    weights_fit = kv_bytes > 0
    typical = min(req.typical_request_tokens, req.max_model_len)
    fp8 = dataclasses.replace(req, kv_cache_dtype_bytes=1.0)
    return FitEstimate(
        weights_gib_per_device=weights / GIB,
        budget_gib_per_device=budget / GIB,
        overhead_gib_per_device=overhead / GIB,
        encoder_gib_per_device=encoder / GIB,
        kv_cache_gib_per_device=kv_bytes / GIB,
        kv_bytes_per_token_per_device=per_token,
        kv_capacity_tokens=capacity,
        kv_capacity_tokens_fp8=_whole_blocks(kv_bytes, _sequence_kv_bytes(fp8, req.max_model_len) / req.max_model_len),
        largest_max_model_len=largest,
        sequences_at_max_model_len=usable / full_sequence,
        typical_request_tokens=typical,
        sequences_at_typical_length=usable / _sequence_kv_bytes(req, typical),
        max_num_seqs=seqs,
        max_num_batched_tokens=batched,
        needed_gib_per_device=(weights + overhead + full_sequence) / GIB,
        weights_fit=weights_fit,
        context_fits=weights_fit and req.max_model_len <= model.max_context and largest >= req.max_model_len,
    )


def suggest_gpu_memory_utilization(accelerator: AcceleratorSpec) -> float:
    """0.90 on GPUs; on TPU v6e the value of the TPU backend's published recipe (vllm_defaults.yaml).

    0.9 is vLLM's long-standing GPU default and what every tutorial and Model Garden example runs
    with; the remaining tenth covers the CUDA context (outside vLLM's accounting), graphs captured after
    profiling on older releases, and fragmentation.
    """
    if accelerator.key == "tpu-v6e":
        return CATALOG.tpu_v6e.gpu_memory_utilization
    return GPU_MEMORY_UTILIZATION


def largest_fitting_max_num_seqs(req: FitRequest) -> int:
    """The largest max_num_seqs (up to the request's) at which one max_model_len sequence still fits; 0 if none.

    Only the V0 vision profiling run and the sampler warm-up grow with max_num_seqs, so this is what
    to suggest when they are what does not fit.
    """
    low, high = 0, effective_max_num_seqs(req)
    while low < high:
        mid = (low + high + 1) // 2
        if estimate(dataclasses.replace(req, max_num_seqs=mid)).context_fits:
            low = mid
        else:
            high = mid - 1
    return low
