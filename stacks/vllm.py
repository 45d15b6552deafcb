"""The vLLM server command a deployment runs, rendered from its effective settings.

One renderer for every platform, so the command proven against a real vLLM in the
integration suite is the command the cloud runs. Flags are emitted only when they apply and
only when the image's vLLM version accepts them (the flag table in stacks/catalog/data/vllm_flags.yaml);
whatever is dropped is returned so the preview checks can report it as an error.

Why each default is what it is (measured by this project on one H200, vLLM 0.25.0, Llama-3.1-8B shape;
README "Serving defaults"; ``tools.bench --compare-tutorial`` repeats it): CUDA graphs stay on (``--enforce-eager`` cost 14% of output
throughput); LoRA is enabled only when adapters are configured (LoRA support without an
adapter cost another ~30%); stats stay on (``--disable-log-stats`` also empties the
Prometheus metrics an autoscaler reads); ``--max-num-seqs`` is left to vLLM (its scheduler admits
requests by free KV blocks; capping it at what the KV cache holds at a quarter of max_model_len cost
a third to half of the output throughput on an L4-sized cache). Together the tutorial's Vertex flags
delivered 0.58x of these defaults.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

from stacks.catalog import CATALOG, ImageSpec

MODEL_GARDEN = "model-garden"
OPENAI = "openai"

SERVER_MODULES = {
    # Google's modified demo server: /generate with {"instances": [...]}, /ping for health.
    MODEL_GARDEN: ("python", "-m", "vllm.entrypoints.api_server"),
    # Upstream OpenAI-compatible server: /v1/*, /health, /metrics.
    OPENAI: ("python3", "-m", "vllm.entrypoints.openai.api_server"),
}


@dataclass(frozen=True)
class VllmSettings:
    """Effective server settings after defaults (see stacks.resolve)."""

    model: str  # what --model gets: a Hugging Face id or a local path
    served_model_name: Optional[str]
    max_model_len: int
    max_num_seqs: Optional[int]  # None: vLLM's own default (no flag)
    tensor_parallel_size: int
    gpu_memory_utilization: Optional[float] = None
    max_num_batched_tokens: Optional[int] = None
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    enforce_eager: bool = False
    enable_prefix_caching: Optional[bool] = None
    trust_remote_code: bool = False
    swap_space: Optional[int] = None
    disable_log_stats: bool = False
    chat_template: Optional[str] = None
    model_type: Optional[str] = None
    revision: Optional[str] = None
    download_dir: Optional[str] = None
    load_format: Optional[str] = None  # e.g. runai_streamer for a gs:// model
    model_loader_extra_config: Optional[Mapping[str, object]] = None  # the streamer's concurrency and memory limit
    enable_lora: bool = False
    max_loras: Optional[int] = None
    max_cpu_loras: Optional[int] = None
    max_lora_rank: Optional[int] = None
    limit_mm_per_prompt: Mapping[str, int] = field(default_factory=dict)
    shutdown_timeout: Optional[int] = None  # seconds vLLM drains on SIGTERM; None: its default (abort)
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerCommand:
    """What the container runs: command, args, plain environment (never secrets)."""

    command: tuple[str, ...]
    args: tuple[str, ...]
    env: Mapping[str, str]
    port: int
    served_model_name: str
    server: str  # MODEL_GARDEN | OPENAI
    health_path: str
    rejected_flags: tuple[str, ...] = ()  # flags the pinned vLLM would refuse; dropped from args

    @property
    def argv(self) -> list[str]:
        return [*self.command, *self.args]


def _number(value: float) -> str:
    return f"{value:g}"


def server_flags(settings: VllmSettings, *, host: str, port: int, server: str) -> list[tuple[str, Optional[str]]]:
    """Typed settings as (flag, value) pairs; value None means a bare switch. Order is stable."""
    s = settings
    flags: list[tuple[str, Optional[str]]] = [
        ("--host", host),
        ("--port", str(port)),
        ("--model", s.model),
    ]
    if s.served_model_name and server == OPENAI:
        flags.append(("--served-model-name", s.served_model_name))
    if s.revision:
        flags.append(("--revision", s.revision))
    flags.append(("--tensor-parallel-size", str(s.tensor_parallel_size)))
    if s.gpu_memory_utilization is not None:
        flags.append(("--gpu-memory-utilization", _number(s.gpu_memory_utilization)))
    flags.append(("--max-model-len", str(s.max_model_len)))
    if s.max_num_seqs is not None:
        flags.append(("--max-num-seqs", str(s.max_num_seqs)))
    if s.max_num_batched_tokens is not None:
        flags.append(("--max-num-batched-tokens", str(s.max_num_batched_tokens)))
    if s.dtype != "auto":
        flags.append(("--dtype", s.dtype))
    if s.kv_cache_dtype != "auto":
        flags.append(("--kv-cache-dtype", s.kv_cache_dtype))
    if s.download_dir:
        flags.append(("--download-dir", s.download_dir))
    if s.load_format:
        flags.append(("--load-format", s.load_format))
    if s.model_loader_extra_config:
        flags.append(("--model-loader-extra-config",
                      json.dumps(dict(s.model_loader_extra_config), separators=(",", ":"), sort_keys=True)))
    if s.enable_lora:
        flags.append(("--enable-lora", None))
        if s.max_loras is not None:
            flags.append(("--max-loras", str(s.max_loras)))
        if s.max_cpu_loras is not None:
            flags.append(("--max-cpu-loras", str(s.max_cpu_loras)))
        if s.max_lora_rank is not None:
            flags.append(("--max-lora-rank", str(s.max_lora_rank)))
    if s.enforce_eager:
        flags.append(("--enforce-eager", None))
    if s.enable_prefix_caching is True:
        flags.append(("--enable-prefix-caching", None))
    elif s.enable_prefix_caching is False:
        flags.append(("--no-enable-prefix-caching", None))
    if s.trust_remote_code:
        flags.append(("--trust-remote-code", None))
    if s.swap_space is not None:
        flags.append(("--swap-space", str(s.swap_space)))
    if s.disable_log_stats:
        flags.append(("--disable-log-stats", None))
    if s.chat_template:
        flags.append(("--chat-template", s.chat_template))
    if s.model_type:
        flags.append(("--model-type", s.model_type))
    if s.shutdown_timeout is not None:
        flags.append(("--shutdown-timeout", str(s.shutdown_timeout)))
    if s.limit_mm_per_prompt:
        flags.append(("--limit-mm-per-prompt", json.dumps(dict(s.limit_mm_per_prompt), separators=(",", ":"))))
    return flags


def flag_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def render_server(
    settings: VllmSettings,
    image: ImageSpec,
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    host: str = "0.0.0.0",
) -> ServerCommand:
    """The container command for ``settings`` on ``image``; flags its vLLM rejects are dropped
    and listed in ``rejected_flags``."""
    server = image.server
    accepted: list[str] = []
    rejected: list[str] = []
    for flag, value in server_flags(settings, host=host, port=port, server=server):
        if not CATALOG.flag_accepted(flag, image.vllm_version, server):
            rejected.append(flag)
            continue
        accepted.append(flag if value is None else f"{flag}={value}")
    for arg in settings.extra_args:
        if not CATALOG.flag_accepted(flag_name(arg), image.vllm_version, server):
            rejected.append(flag_name(arg))
            continue
        accepted.append(arg)
    return ServerCommand(
        command=SERVER_MODULES[server],
        args=tuple(accepted),
        env=dict(env or {}),
        port=port,
        served_model_name=settings.served_model_name or settings.model,
        server=server,
        health_path="/ping" if server == MODEL_GARDEN else "/health",
        rejected_flags=tuple(rejected),
    )
