"""The one config schema every stack uses; stacks differ only in their Pulumi.<stack>.yaml.

Keys live in the ``llm-serving`` namespace (``llm-serving:deployments``), plus Pulumi's own
``gcp:project`` and ``gcp:region``. Values are parsed into frozen dataclasses before any
resource is registered; every problem in a stack file is reported in one error whose lines
name the key path as ``pulumi config set --path`` takes it.

Defaults that depend on the model or the hardware (machine type, max_num_seqs, ...) are left
``None`` here and derived in ``stacks.resolve`` from the catalogs, so a reader can tell what
the user set from what the project chose.
"""

from __future__ import annotations

import enum
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from components.images import pinned_image_problem
from stacks import defaults
from stacks.catalog import CATALOG, hardware_defaults
from stacks.fit import DEFAULT_TYPICAL_REQUEST_TOKENS, GPU_MEMORY_UTILIZATION
from stacks.schema import (
    NAMESPACE,
    ConfigError,
    Problems,
    did_you_mean,
    is_missing,
    join,
    parse,
    setting,
)

NAME_PATTERN = r"[a-z]([a-z0-9-]{0,18}[a-z0-9])?"
EMPTY: Mapping[str, Any] = types.MappingProxyType({})


class Environment(str, enum.Enum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class Platform(str, enum.Enum):
    VERTEX = "vertex"
    CLOUDRUN = "cloudrun"
    GKE = "gke"


class WeightsSource(str, enum.Enum):
    IMAGE = "image"  # weights baked into an image built by Cloud Build (the Cloud Run tutorial's way)
    GCS = "gcs"  # weights in the model bucket, mounted read-only
    HUB = "hub"  # downloaded from Hugging Face when the container starts


class Ingress(str, enum.Enum):
    ALL = "all"
    INTERNAL = "internal"
    INTERNAL_AND_LOAD_BALANCER = "internal-and-cloud-load-balancing"


class AutoscalingMetric(str, enum.Enum):
    NUM_REQUESTS_WAITING = "num_requests_waiting"
    KV_CACHE_USAGE = "kv_cache_usage"


class ReleaseChannel(str, enum.Enum):
    RAPID = "RAPID"
    REGULAR = "REGULAR"
    STABLE = "STABLE"


@dataclass(frozen=True)
class Protections:
    """What an environment protects; derived from ``environment``, never set per resource."""

    protect_stateful: bool  # Pulumi `protect` on the bucket, secrets and clusters
    deletion_protection: bool  # provider-side deletion protection (GKE, Cloud Run)
    allow_force_destroy: bool  # may the model bucket be deleted with objects in it


PROTECTIONS: Mapping[Environment, Protections] = types.MappingProxyType(
    {
        Environment.DEV: Protections(False, False, True),
        Environment.STAGING: Protections(False, True, False),
        Environment.PROD: Protections(True, True, False),
    }
)


# ---------------------------------------------------------------------------
# Stack-wide sections.


@dataclass(frozen=True)
class BucketConfig:
    """The model bucket: weights, LoRA adapters and compile caches."""

    name: Optional[str] = setting(
        f"Bucket name; default `{defaults.shown(defaults.BUCKET_NAME)}`.",
        None,
        pattern=r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]",
        pattern_hint="bucket names are 3-63 lowercase letters, digits, dots, hyphens and underscores",
    )
    force_destroy: bool = setting(
        "Delete the bucket even when it holds objects. Allowed in dev only.", False
    )
    versioning: bool = setting("Keep noncurrent object versions.", False)
    soft_delete_days: int = setting(
        "Soft-delete retention in days (0 turns it off, 7-90 otherwise).", 7, minimum=0, maximum=90
    )


@dataclass(frozen=True)
class RegistryConfig:
    """Artifact Registry: a Docker repository for built images and a Docker Hub proxy."""

    keep_recent_versions: int = setting(
        "Cleanup policy: versions kept per image regardless of age.", 10, minimum=1, maximum=1000
    )
    delete_untagged_after_days: int = setting(
        "Cleanup policy: untagged versions older than this are deleted.", 14, minimum=1, maximum=3650
    )
    docker_hub_remote: bool = setting(
        "Create the remote repository that proxies Docker Hub (upstream vLLM images are pulled "
        "through it, in-region).",
        True,
    )


@dataclass(frozen=True)
class AccessConfig:
    """Who may reach the endpoints. Nothing is public unless this says so."""

    allow_public_invokers: bool = setting(
        "Allow `allUsers` / `allAuthenticatedUsers` among a deployment's invokers.", False
    )


@dataclass(frozen=True)
class NodePoolConfig:
    """A GKE node pool of TPU slices or GPU nodes. The family follows from the machine type."""

    machine_type: str = setting("Machine type, e.g. `ct6e-standard-8t` (TPU v6e) or `g2-standard-24` (L4).")
    tpu_topology: Optional[str] = setting(
        "TPU slice topology, e.g. `2x4`; required for TPU machine types.", None, pattern=r"\d+x\d+(x\d+)?",
        pattern_hint="a topology looks like 2x4 or 2x2x2",
    )
    gpu_count: Optional[int] = setting(
        "GPUs per node for GPU machine types; default: what the machine type carries.", None, minimum=1
    )
    min_nodes: int = setting("Autoscaling: total minimum nodes.", 0, minimum=0, maximum=1000)
    max_nodes: int = setting("Autoscaling: total maximum nodes.", 1, minimum=1, maximum=1000)
    spot: bool = setting("Use Spot VMs (cheaper, may be preempted).", False)
    reservation: Optional[str] = setting(
        "Consume this specific reservation (name) instead of on-demand capacity.", None
    )
    disk_size_gb: int = setting("Boot disk size per node (GB).", 200, minimum=50, maximum=65536)
    node_locations: tuple[str, ...] = setting(
        "Zones for the pool's nodes; default: the cluster's zone.", ()
    )

    def validate(self, path: str, problems: Problems) -> None:
        if self.min_nodes > self.max_nodes:
            problems.add(
                join(path, "minNodes"),
                f"got {self.min_nodes}, above maxNodes {self.max_nodes}; lower minNodes or raise maxNodes",
            )


@dataclass(frozen=True)
class GkeClusterConfig:
    """The stack's GKE cluster; required when any deployment has `platform: gke`."""

    location: str = setting(
        "Zone (or region) of the cluster, one that offers the node pools' accelerators "
        "(TPU v6e: e.g. `us-east5-b`, `europe-west4-a`).",
        pattern=r"[a-z]+-[a-z]+\d(-[a-z])?",
        pattern_hint="give a region like us-central1 or a zone like us-east5-b",
    )
    name: Optional[str] = setting(f"Cluster name; default `{defaults.shown(defaults.CLUSTER_NAME)}`.", None,
                                  pattern=NAME_PATTERN + r"|[a-z][a-z0-9-]{0,38}[a-z0-9]")
    autopilot: bool = setting("Create an Autopilot cluster instead of Standard (node pools are then managed by GKE).", False)
    release_channel: ReleaseChannel = setting("GKE release channel.", ReleaseChannel.REGULAR)
    min_master_version: str = setting(
        "Minimum control-plane version; TPU v6e needs 1.31.2-gke.1115000 or later.",
        "1.31.2-gke.1115000",
        pattern=r"1\.\d+\.\d+-gke\.\d+|1\.\d+(\.\d+)?",
        pattern_hint="give a GKE version like 1.31.2-gke.1115000",
    )
    network: Optional[str] = setting("VPC network self link or name; default: the project's default network.", None)
    subnetwork: Optional[str] = setting("Subnetwork self link or name.", None)
    node_pools: Mapping[str, NodePoolConfig] = setting(
        "Accelerator node pools keyed by a stable name.", EMPTY, key_pattern=NAME_PATTERN
    )


# ---------------------------------------------------------------------------
# Per-deployment sections.


@dataclass(frozen=True)
class ModelArchitectureConfig:
    """Architecture facts for a model the catalog does not know (same fields as the catalog)."""

    architecture: str = setting("HF `architectures[0]`, e.g. `LlamaForCausalLM`.")
    params_billion: float = setting("Parameters, in billions.", minimum=0.001)
    num_layers: int = setting("Decoder layers holding KV cache.", minimum=1)
    hidden_size: int = setting("Hidden size.", minimum=1)
    num_attention_heads: int = setting("Attention heads.", minimum=1)
    num_kv_heads: int = setting("Key/value heads (GQA).", minimum=1)
    head_dim: int = setting("Head dimension.", minimum=1)
    vocab_size: int = setting("Vocabulary size.", minimum=1)
    max_context: int = setting("Longest context the model supports (tokens).", minimum=1)
    modality: str = setting("`text` or `vision`.", "text", pattern=r"text|vision", pattern_hint="use text or vision")
    gated: bool = setting("The Hugging Face repository is gated (needs a token).", False)
    chat_template: bool = setting("The tokenizer ships a chat template.", False)
    weight_bytes_per_param: float = setting("Bytes per weight (2 = bf16, 1 = fp8).", 2.0, minimum=0.25, maximum=4)
    sliding_window: Optional[int] = setting("Sliding-window size, if some layers use one.", None, minimum=1)
    sliding_window_layers: int = setting("How many layers use the sliding window.", 0, minimum=0)
    cross_attention_layers: int = setting("Cross-attention layers (vision encoder-decoder).", 0, minimum=0)
    intermediate_size: Optional[int] = setting(
        "MLP width (`intermediate_size` in config.json); sizes the activation estimate. Default 3.5 x hiddenSize.",
        None, minimum=1)


@dataclass(frozen=True)
class HardwareConfig:
    """Where the model runs. Anything unset comes from the catalog's recommendation for the model."""

    machine_type: Optional[str] = setting("Vertex AI machine type, e.g. `g2-standard-12`.", None)
    accelerator_type: Optional[str] = setting(
        "Vertex AI: `NVIDIA_L4`, `NVIDIA_TESLA_A100`, ...; Cloud Run: `nvidia-l4` or `nvidia-rtx-pro-6000`.", None
    )
    accelerator_count: Optional[int] = setting("Accelerators per replica (Vertex AI).", None, minimum=1, maximum=16)
    cpu: Optional[str] = setting(
        f"Cloud Run CPU limit per instance (default {hardware_defaults()['cloudrun']['cpu']}; at least the GPU minimum).", None,
        pattern=r"\d+(\.\d+)?", pattern_hint="give a number of vCPUs such as 8",
    )
    memory: Optional[str] = setting(
        f"Cloud Run memory limit per instance (default {hardware_defaults()['cloudrun']['memory']}; at least the GPU minimum).", None,
        pattern=r"\d+(Gi|Mi)", pattern_hint="give a size such as 32Gi",
    )
    node_pool: Optional[str] = setting("GKE: the `gke.nodePools` entry to run on.", None)


@dataclass(frozen=True)
class VllmConfig:
    """vLLM server settings: a typed core, each emitted only when it applies, plus `extraArgs`."""

    max_model_len: Optional[int] = setting(
        f"Longest sequence (prompt + output) served; default {defaults.MAX_MODEL_LEN}, capped by the model's context "
        "and by what fits the devices.", None, minimum=16)
    gpu_memory_utilization: Optional[float] = setting(
        f"Fraction of device memory vLLM may use; default {GPU_MEMORY_UTILIZATION:.2f} on GPUs, "
        f"{CATALOG.tpu_v6e.gpu_memory_utilization:.2f} on TPU v6e (the TPU backend's recipe).", None, minimum=0.1, maximum=0.99
    )
    max_num_seqs: Optional[int] = setting(
        "Most sequences batched at once; default: vLLM's own (its scheduler admits by free KV blocks); "
        f"{defaults.VISION_MAX_NUM_SEQS} for Llama 3.2 Vision on the Model Garden image.", None, minimum=1, maximum=4096
    )
    max_num_batched_tokens: Optional[int] = setting("Token budget per scheduler step.", None, minimum=16)
    tensor_parallel_size: Optional[int] = setting("Tensor parallel size; default: the accelerator count.", None, minimum=1)
    dtype: str = setting("Weights/activation dtype.", "auto", pattern=r"auto|half|float16|bfloat16|float|float32",
                         pattern_hint="use auto, half, float16, bfloat16, float or float32")
    kv_cache_dtype: str = setting("KV-cache dtype; `fp8` doubles the tokens the cache holds (uncalibrated scales: "
                                  "check accuracy; README \"Serving defaults\").", "auto", pattern=r"auto|fp8|fp8_e4m3|fp8_e5m2",
                                  pattern_hint="use auto, fp8, fp8_e4m3 or fp8_e5m2")
    enforce_eager: bool = setting(
        "Disable CUDA graphs. Costs ~14% output throughput (measured); only for debugging.", False
    )
    enable_prefix_caching: Optional[bool] = setting("Prefix caching; default: vLLM's (on in V1).", None)
    trust_remote_code: bool = setting("Run code shipped in the model repository.", False)
    swap_space: Optional[int] = setting("CPU swap space (GiB); V0 only, rejected by vLLM 0.18+.", None, minimum=0)
    disable_log_stats: bool = setting(
        "Turn off stats logging; this also empties the Prometheus metrics autoscaling needs.", False
    )
    chat_template: Optional[str] = setting("Chat template file path or inline Jinja for models without one.", None)
    model_type: Optional[str] = setting("Model Garden container's `--model-type` (Vertex AI only).", None)
    served_model_name: Optional[str] = setting("Name clients send as `model`; default: the model id.", None)
    limit_mm_per_prompt: Mapping[str, int] = setting(
        "Multimodal items per prompt, e.g. `{image: 1}`.", EMPTY
    )
    extra_args: tuple[str, ...] = setting(
        "More server flags, appended verbatim (`--flag=value`); checked against the pinned vLLM.", ()
    )

    def validate(self, path: str, problems: Problems) -> None:
        for index, arg in enumerate(self.extra_args):
            if not arg.startswith("--"):
                problems.add(f"{path}.extraArgs[{index}]", f"got {arg!r}; write each flag as --flag or --flag=value")


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters served next to the base model, read from the model bucket."""

    adapters: Mapping[str, str] = setting(
        "Adapter name → object prefix in the model bucket (e.g. `loras/support-v3`).", EMPTY, key_pattern=r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"
    )
    max_loras: int = setting("Adapters active in one batch.", 1, minimum=1)
    max_cpu_loras: Optional[int] = setting("Adapters cached in CPU memory; at least maxLoras.", None, minimum=1)
    max_lora_rank: int = setting("Largest adapter rank.", 16, minimum=1, maximum=512)

    def validate(self, path: str, problems: Problems) -> None:
        if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
            problems.add(join(path, "maxCpuLoras"),
                         f"got {self.max_cpu_loras}, below maxLoras {self.max_loras}; vLLM requires maxCpuLoras >= maxLoras")


@dataclass(frozen=True)
class ScalingConfig:
    """Replicas (Vertex AI, GKE) or instances (Cloud Run)."""

    min_replicas: Optional[int] = setting(
        f"Fewest replicas; default {defaults.CLOUDRUN_MIN_REPLICAS} on Cloud Run, {defaults.MIN_REPLICAS} elsewhere "
        f"(Vertex AI keeps at least {defaults.VERTEX_REPLICA_FLOOR}).", None, minimum=0, maximum=1000)
    max_replicas: Optional[int] = setting(
        f"Most replicas; default {defaults.MAX_REPLICAS} (Cloud Run {defaults.CLOUDRUN_MAX_REPLICAS}; GKE at least "
        "minReplicas).", None, minimum=1, maximum=1000)
    metric: AutoscalingMetric = setting(
        "GKE: the vLLM metric the HPA scales on.", AutoscalingMetric.NUM_REQUESTS_WAITING
    )
    target: Optional[float] = setting(
        f"Target per replica: waiting requests (default {defaults.WAITING_REQUESTS_TARGET:g}) or KV-cache usage 0-1 "
        f"(default {defaults.KV_CACHE_USAGE_TARGET:g}); Vertex AI: accelerator duty cycle percent "
        f"(default {defaults.DUTY_CYCLE_TARGET_PERCENT:g}).", None, minimum=0
    )

    def validate(self, path: str, problems: Problems) -> None:
        if self.min_replicas is not None and self.max_replicas is not None and self.min_replicas > self.max_replicas:
            problems.add(join(path, "minReplicas"),
                         f"got {self.min_replicas}, above maxReplicas {self.max_replicas}; lower it or raise maxReplicas")


@dataclass(frozen=True)
class VertexConfig:
    """Vertex AI endpoint options."""

    dedicated_endpoint: bool = setting(
        "Serve on a dedicated endpoint DNS (streaming, 1 h timeout, 10 MB payloads).", True
    )
    spot: bool = setting("Use Spot capacity for the replicas.", False)
    shared_memory_gib: int = setting("Container /dev/shm size (GiB).", 16, minimum=1, maximum=256)
    deployment_timeout_seconds: int = setting("How long Vertex AI waits for the container to become healthy.", 7200, minimum=60, maximum=7200)
    hugging_face_cache: bool = setting("Let Vertex AI cache the Hugging Face weights.", True)


@dataclass(frozen=True)
class CloudRunConfig:
    """Cloud Run GPU service options."""

    weights: WeightsSource = setting("Where the weights come from: `image`, `gcs` or `hub`.", WeightsSource.IMAGE)
    gpu_zonal_redundancy: bool = setting(
        "Reserve capacity for zonal failover (dearer; separate quota). Off = best effort.", True
    )
    max_concurrency: Optional[int] = setting(
        "Requests per instance at once; default: vLLM's max_num_seqs (at most 1000) so queuing happens in vLLM.", None, minimum=1, maximum=1000
    )
    request_timeout_seconds: int = setting("Request timeout (s).", 600, minimum=1, maximum=3600)
    startup_timeout_seconds: int = setting(
        "How long the startup probe allows for model load (s); Cloud Run allows up to 1800 with a GPU.",
        1200, minimum=60, maximum=1800,
    )
    ingress: Ingress = setting("Who can reach the URL at the network level (IAM still applies).", Ingress.ALL)
    invokers: tuple[str, ...] = setting(
        "IAM members allowed to invoke, e.g. `group:ml@example.com`. Public members need `access.allowPublicInvokers`.", ()
    )
    gcs_prefix: Optional[str] = setting("With `weights: gcs`: object prefix of the model in the bucket; default `models/<model id>`.", None)


@dataclass(frozen=True)
class GkeWorkloadConfig:
    """Kubernetes options of a GKE deployment."""

    namespace: str = setting("Namespace of the workload.", "llm-serving", pattern=r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
                             pattern_hint="use a DNS label: lowercase letters, digits and hyphens")
    public_load_balancer: bool = setting(
        "Expose the Service on an external load balancer. Default: an internal load balancer.", False
    )
    startup_timeout_seconds: int = setting(
        "Startup probe budget for download plus XLA compilation (s).", 3600, minimum=60, maximum=14400
    )
    xla_cache: bool = setting("Keep the XLA compile cache in the bucket (TPU).", True)


@dataclass(frozen=True)
class DeploymentConfig:
    """One model served on one platform, keyed by a stable name."""

    platform: Platform = setting("Where it runs.")
    model: str = setting("Hugging Face model id, e.g. `meta-llama/Llama-3.1-8B-Instruct`.",
                         pattern=r"[A-Za-z0-9][\w.-]*/[\w.-]+", pattern_hint="give a Hugging Face id like org/name")
    model_revision: Optional[str] = setting("Hugging Face revision (commit) to pin.", None)
    image: Optional[str] = setting(
        "Serving image; default: the catalog's pinned image for the platform. A tag or digest, never `latest`.", None
    )
    vllm_version: Optional[str] = setting(
        "vLLM version inside `image` when the catalog does not know the image (flags and metrics are checked against it).",
        None, pattern=r"v?\d+\.\d+(\.\d+)?", pattern_hint="give a version like 0.32.0",
    )
    custom_model: Optional[ModelArchitectureConfig] = setting(
        "Architecture facts for a model the catalog does not know.", None
    )
    hardware: HardwareConfig = setting("Hardware; unset fields come from the catalog.", HardwareConfig())
    vllm: VllmConfig = setting("vLLM server settings.", VllmConfig())
    lora: LoraConfig = setting("LoRA adapters.", LoraConfig())
    scaling: ScalingConfig = setting("Replicas and autoscaling.", ScalingConfig())
    vertex: Optional[VertexConfig] = setting("Vertex AI options (platform vertex only).", None)
    cloudrun: Optional[CloudRunConfig] = setting("Cloud Run options (platform cloudrun only).", None)
    gke: Optional[GkeWorkloadConfig] = setting("GKE options (platform gke only).", None)
    labels: Mapping[str, str] = setting("Extra labels for this deployment's resources.", EMPTY)
    typical_request_tokens: Optional[int] = setting(
        "Prompt + output tokens of a typical request, for the plan's concurrency figure; default "
        f"{DEFAULT_TYPICAL_REQUEST_TOKENS}.", None, minimum=1
    )

    def validate(self, path: str, problems: Problems) -> None:
        for section in ("vertex", "cloudrun", "gke"):
            if getattr(self, section) is not None and section != self.platform.value:
                problems.add(join(path, section),
                             f"applies to platform {section}, but this deployment has platform {self.platform.value}; "
                             f"remove it or move the options under `{self.platform.value}:`")
        if self.image is not None:
            _validate_image(self.image, join(path, "image"), problems)
        if self.lora.adapters and self.platform is not Platform.VERTEX and self.platform is not Platform.GKE:
            problems.add(join(path, "lora.adapters"),
                         "LoRA adapters are supported on vertex and gke deployments; remove them here")

    @property
    def vertex_options(self) -> VertexConfig:
        return self.vertex or VertexConfig()

    @property
    def cloudrun_options(self) -> CloudRunConfig:
        return self.cloudrun or CloudRunConfig()

    @property
    def gke_options(self) -> GkeWorkloadConfig:
        return self.gke or GkeWorkloadConfig()


def _validate_image(image: str, path: str, problems: Problems) -> None:
    problem = pinned_image_problem(image)
    if problem:
        problems.add(path, problem)


# ---------------------------------------------------------------------------
# The whole stack.


@dataclass(frozen=True)
class Settings:
    """Keys in the `llm-serving` namespace."""

    environment: Environment = setting("Which environment this stack is; drives protections (prod protects stateful resources).")
    name_prefix: Optional[str] = setting(
        f"Prefix of every resource name; default `{defaults.shown(defaults.NAME_PREFIX)}`.", None,
        pattern=r"[a-z][a-z0-9-]{1,10}[a-z0-9]", pattern_hint="use 3-12 lowercase letters, digits or hyphens, starting with a letter",
    )
    labels: Mapping[str, str] = setting("Labels added to every resource that takes labels.", EMPTY)
    hf_token_secret: Optional[str] = setting(
        "Use an existing Secret Manager secret for the Hugging Face token instead of `hfToken` "
        "(`projects/<p>/secrets/<name>` or a secret id in this project).", None,
        pattern=r"(projects/[^/]+/secrets/)?[A-Za-z0-9_-]{1,255}",
        pattern_hint="give a secret id or projects/<project>/secrets/<id>",
    )
    bucket: BucketConfig = setting("The model bucket.", BucketConfig())
    registry: RegistryConfig = setting("Artifact Registry repositories.", RegistryConfig())
    access: AccessConfig = setting("Access guardrails.", AccessConfig())
    check_quota: bool = setting("Compare accelerator quota with what the stack needs at max replicas during preview.", True)
    gke: Optional[GkeClusterConfig] = setting("The GKE cluster (for `platform: gke`).", None)
    deployments: Mapping[str, DeploymentConfig] = setting(
        "Models to serve, keyed by a stable name (renaming one replaces its resources).", EMPTY, key_pattern=NAME_PATTERN
    )


# Keys read outside the dataclasses: Pulumi's gcp provider settings and the secret token.
HF_TOKEN_KEY = f"{NAMESPACE}:hfToken"
PROJECT_KEY = "gcp:project"
REGION_KEY = "gcp:region"
OTHER_KNOWN_KEYS = (PROJECT_KEY, REGION_KEY, "gcp:zone", HF_TOKEN_KEY)


@dataclass(frozen=True)
class StackConfig:
    """Everything the program needs from one stack's config, parsed and checked."""

    source: str  # the stack file, for messages
    stack: str
    project: str
    region: str
    settings: Settings
    hf_token_set: bool  # `hfToken` is present (as a secret)

    @property
    def environment(self) -> Environment:
        return self.settings.environment

    @property
    def protections(self) -> Protections:
        return PROTECTIONS[self.settings.environment]

    @property
    def prefix(self) -> str:
        return self.settings.name_prefix or defaults.NAME_PREFIX.format(environment=self.settings.environment.value)

    @property
    def deployments(self) -> Mapping[str, DeploymentConfig]:
        return self.settings.deployments

    @property
    def has_hf_token(self) -> bool:
        return self.hf_token_set or self.settings.hf_token_secret is not None

    def labels(self, **extra: str) -> dict[str, str]:
        """Labels for a resource: the stack's own, the user's, then per-resource ones."""
        base = {"managed-by": "pulumi", "app": "llm-serving", "environment": self.environment.value}
        return {**base, **dict(self.settings.labels), **extra}


def load(values: Mapping[str, Any], secret_keys: set[str] | frozenset[str], *, source: str, stack: str) -> StackConfig:
    """Parse a stack's config (full keys such as ``llm-serving:deployments``) or raise ConfigError.

    Structured values may arrive as JSON strings (how the Pulumi engine passes them) or as
    already-decoded YAML.
    """
    problems = Problems()
    raw: dict[str, Any] = {}
    for full_key, value in values.items():
        namespace, _, name = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        if name == "hfToken":
            continue
        raw[name] = _decode(value)

    for full_key in values:
        if full_key.startswith(f"{NAMESPACE}:") or full_key in OTHER_KNOWN_KEYS:
            continue
        namespace = full_key.partition(":")[0]
        if namespace in ("gcp", "kubernetes", "pulumi"):
            continue  # provider and engine settings: not ours to judge
        problems.add(full_key, f"unknown key; this project reads keys in the `{NAMESPACE}:` namespace")

    project = values.get(PROJECT_KEY)
    region = values.get(REGION_KEY)
    if not project:
        problems.add(PROJECT_KEY, "is required: the Google Cloud project to deploy into (`pulumi config set gcp:project <id>`)")
    elif not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", str(project)):
        problems.add(PROJECT_KEY, f"got {project!r}; a project id is 6-30 lowercase letters, digits or hyphens")
    if not region:
        problems.add(REGION_KEY, "is required: the region for regional resources, e.g. us-central1 (`pulumi config set gcp:region us-central1`)")

    hf_token_set = HF_TOKEN_KEY in values and values[HF_TOKEN_KEY] not in (None, "")
    if hf_token_set and HF_TOKEN_KEY not in secret_keys:
        problems.add(HF_TOKEN_KEY, "is stored in plaintext in the stack file; remove it and set it again with "
                                   "`pulumi config set --secret llm-serving:hfToken <token>`")

    settings = parse(Settings, raw, NAMESPACE + ":", problems)
    if not is_missing(settings):
        _validate_stack(settings, str(project or ""), problems)
    if problems:
        raise ConfigError(source, problems.items)
    return StackConfig(
        source=source,
        stack=stack,
        project=str(project),
        region=str(region),
        settings=settings,
        hf_token_set=hf_token_set,
    )


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _validate_stack(settings: Settings, project: str, problems: Problems) -> None:
    env = settings.environment
    protections = PROTECTIONS[env]
    ns = NAMESPACE + ":"
    if settings.bucket.force_destroy and not protections.allow_force_destroy:
        problems.add(ns + "bucket.forceDestroy",
                     f"is true in a {env.value} stack; only dev may delete a bucket with objects in it. Set it to false")
    prefix = settings.name_prefix or defaults.NAME_PREFIX.format(environment=env.value)
    for name, deployment in settings.deployments.items():
        path = f"{ns}deployments.{name}"
        account_id = f"{prefix}-{name}"
        if len(account_id) > 30:
            problems.add(path, f"the service account id {account_id!r} would be {len(account_id)} characters; "
                               "Google allows 30. Shorten the deployment name or namePrefix")
        if deployment.platform is Platform.GKE:
            gke = settings.gke
            if gke is None:
                problems.add(path + ".platform", f"is gke but the stack has no `{ns}gke` cluster section; add one "
                                                 "with a location and a node pool")
            else:
                pool = deployment.hardware.node_pool
                pools = list(gke.node_pools)
                if not gke.autopilot and pool is None and len(pools) != 1:
                    problems.add(path + ".hardware.nodePool",
                                 f"is required when the cluster has {len(pools)} node pools; choose one of: {', '.join(pools) or '(none defined)'}")
                elif pool is not None and pool not in gke.node_pools and not gke.autopilot:
                    problems.add(path + ".hardware.nodePool",
                                 f"got {pool!r}; defined node pools: {', '.join(pools) or '(none)'}{did_you_mean(pool, pools)}")
        for member in deployment.cloudrun_options.invokers:
            if member in ("allUsers", "allAuthenticatedUsers") and not settings.access.allow_public_invokers:
                problems.add(f"{path}.cloudrun.invokers",
                             f"contains {member!r}, which makes the service public; remove it, or set "
                             f"`{ns}access.allowPublicInvokers: true` if the stack really must be public")
            elif not re.fullmatch(r"(user|group|serviceAccount|domain|principal|principalSet):.+|allUsers|allAuthenticatedUsers", member):
                problems.add(f"{path}.cloudrun.invokers",
                             f"got {member!r}; an IAM member looks like user:a@example.com, group:..., serviceAccount:... or domain:...")
