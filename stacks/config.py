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

import datetime as _dt
import enum
import ipaddress
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from components.keda import NAMESPACE as KEDA_NAMESPACE
from components.lora import adapter_source_problem
from components.metrics_adapter import NAMESPACE as METRICS_ADAPTER_NAMESPACE
from components.rules import (
    GCP_LABELS_MAX,
    SYSTEM_NAMESPACES,
    TPU_V6E_MIN_GKE_VERSION,
    bucket_name_problem,
    dns_label_problem,
    gcp_label_problem,
    gke_floor_problem,
    hf_model_id_problem,
    is_public_member,
    k8s_label_problem,
    looks_like_token,
    member_problem,
    pinned_image_problem,
    project_id_problem,
    secret_reference_problem,
    service_account_id_problem,
    soft_delete_days_problem,
)
from stacks import defaults
from stacks.catalog import CATALOG, hardware_defaults
from stacks.catalog.capacity import capacity_table
from stacks.catalog.locations import locations
from stacks.fit import DEFAULT_TYPICAL_REQUEST_TOKENS, GPU_MEMORY_UTILIZATION
from stacks.schema import (
    NAMESPACE,
    TOKEN_HINT,
    ConfigError,
    Problem,
    Problems,
    did_you_mean,
    is_missing,
    join,
    parse,
    setting,
)

NAME_PATTERN = r"[a-z]([a-z0-9-]{0,18}[a-z0-9])?"
EMPTY: Mapping[str, Any] = types.MappingProxyType({})

# GKE maintenance rules (https://cloud.google.com/kubernetes-engine/docs/concepts/maintenance-windows-and-exclusions):
# a window must allow at least 48 hours of maintenance in any 32 days, in stretches of at least 4 hours; a
# NO_UPGRADES exclusion lasts at most 30 days, the narrower scopes up to 180 days (or the version's end of support).
RFC3339 = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})"
RFC3339_HINT = "give an RFC 3339 time such as 2026-01-03T00:00:00Z"
MIN_WINDOW_HOURS = 4
MIN_WINDOW_HOURS_PER_32_DAYS = 48
MAX_EXCLUSION_DAYS = {"NO_UPGRADES": 30, "NO_MINOR_UPGRADES": 180, "NO_MINOR_OR_NODE_UPGRADES": 180}


def _rfc3339(text: str) -> Optional[_dt.datetime]:
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class Environment(str, enum.Enum):
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class Platform(str, enum.Enum):
    VERTEX = "vertex"
    CLOUDRUN = "cloudrun"
    GKE = "gke"


class WeightsSource(str, enum.Enum):
    STREAM = "stream"  # the bucket copy streamed by vLLM's Run:ai model streamer from gs:// (the default)
    GCS = "gcs"  # the bucket copy, mounted read-only as a Cloud Storage volume
    IMAGE = "image"  # weights baked into an image built by Cloud Build (the Cloud Run tutorial's way)
    HUB = "hub"  # downloaded from Hugging Face when the container starts


class Ingress(str, enum.Enum):
    ALL = "all"
    INTERNAL = "internal"
    INTERNAL_AND_LOAD_BALANCER = "internal-and-cloud-load-balancing"


class AutoscalingMetric(str, enum.Enum):
    NUM_REQUESTS_WAITING = "num_requests_waiting"
    KV_CACHE_USAGE = "kv_cache_usage"


class CapacityType(str, enum.Enum):
    """A way to obtain GKE nodes (stacks/catalog/data/capacity.yaml says where each exists)."""

    RESERVATION = "reservation"
    ON_DEMAND = "on-demand"
    FLEX_START = "flex-start"
    SPOT = "spot"


class ExclusionScope(str, enum.Enum):
    """What a GKE maintenance exclusion holds back."""

    NO_UPGRADES = "NO_UPGRADES"
    NO_MINOR_UPGRADES = "NO_MINOR_UPGRADES"
    NO_MINOR_OR_NODE_UPGRADES = "NO_MINOR_OR_NODE_UPGRADES"


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

    name: Optional[str] = setting(f"Bucket name; default `{defaults.shown(defaults.BUCKET_NAME)}`.", None)
    force_destroy: bool = setting(
        "Delete the bucket even when it holds objects. Allowed in dev only.", False
    )
    versioning: bool = setting("Keep noncurrent object versions.", False)
    soft_delete_days: int = setting(
        "Soft-delete retention in days (0 turns it off, 7-90 otherwise).", 7, minimum=0, maximum=90
    )
    hierarchical_namespace: bool = setting(
        "Create the bucket with a hierarchical namespace (real folders: faster listing and atomic renames for GCS FUSE, "
        "higher initial request rates). Set only at creation: changing it replaces the bucket and deletes its objects. "
        "Not with `versioning`.", False
    )
    anywhere_cache_zones: tuple[str, ...] = setting(
        "Zones, in the stack's region, where Anywhere Cache keeps a zonal SSD read cache of the bucket next to the "
        "serving nodes, e.g. `us-central1-b` (billed per GiB cached and per read). Empty: no cache.", ()
    )
    anywhere_cache_ttl_seconds: int = setting(
        "How long Anywhere Cache keeps an object after its last read (s): 1 hour to 7 days.", 86400,
        minimum=3600, maximum=604800,
    )

    def validate(self, path: str, problems: Problems) -> None:
        if self.name is not None and bucket_name_problem(self.name):
            problems.add(join(path, "name"), f"{bucket_name_problem(self.name)}; choose another name")
        if self.hierarchical_namespace and self.versioning:
            problems.add(join(path, "hierarchicalNamespace"),
                         "is true with versioning: buckets with a hierarchical namespace do not support object "
                         "versioning (https://cloud.google.com/storage/docs/hns-overview); turn one of them off")
        if len(set(self.anywhere_cache_zones)) != len(self.anywhere_cache_zones):
            problems.add(join(path, "anywhereCacheZones"), f"got {list(self.anywhere_cache_zones)}; a bucket has at "
                                                           "most one cache per zone, list each zone once")
        if soft_delete_days_problem(self.soft_delete_days):
            problems.add(join(path, "softDeleteDays"), f"{soft_delete_days_problem(self.soft_delete_days)}; "
                                                       "set 0 to turn soft delete off or a value from 7 to 90")


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
    acknowledge_tag_pinned_images: bool = setting(
        "Prod only: turn the error for serving images pinned by tag (not digest) into a warning, while digests are "
        "being resolved. Every image it covers is still listed in the plan.", False
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
    fallbacks: tuple[CapacityType, ...] = setting(
        "Capacity to fall back to, in order, when the pool is full or its own capacity is out: `reservation` (the "
        "pool's `reservation`), `on-demand`, `flex-start`, `spot`. Non-empty: a ComputeClass named after the pool "
        "tries the pool first, then nodes GKE creates from each fallback; the workload selects the class. Each must "
        "exist in the pool's zones (stacks/catalog/data/capacity.yaml).", ()
    )

    @property
    def own_capacity(self) -> CapacityType:
        """What the pool's own nodes are: its reservation, Spot, or on-demand."""
        if self.reservation:
            return CapacityType.RESERVATION
        return CapacityType.SPOT if self.spot else CapacityType.ON_DEMAND

    def validate(self, path: str, problems: Problems) -> None:
        if self.min_nodes > self.max_nodes:
            problems.add(
                join(path, "minNodes"),
                f"got {self.min_nodes}, above maxNodes {self.max_nodes}; lower minNodes or raise maxNodes",
            )
        if self.spot and self.reservation:
            problems.add(join(path, "spot"), "is true with a reservation; a pool consumes its reservation or Spot "
                                             "capacity, not both: remove one (list the other under fallbacks)")
        seen: set[CapacityType] = set()
        for index, capacity in enumerate(self.fallbacks):
            where = f"{join(path, 'fallbacks')}[{index}]"
            if capacity in seen:
                problems.add(where, f"{capacity.value!r} is listed twice; list each capacity type once")
            seen.add(capacity)
            if capacity is CapacityType.RESERVATION and not self.reservation:
                problems.add(where, "is reservation, but the pool names none; set reservation to the reservation's "
                                    "name or remove this entry")


@dataclass(frozen=True)
class MaintenanceExclusionConfig:
    """A period in which GKE does not upgrade the cluster (what it holds back depends on `scope`)."""

    start: str = setting("Start, RFC 3339 (`2026-12-20T00:00:00Z`).", pattern=RFC3339, pattern_hint=RFC3339_HINT)
    end: str = setting("End, RFC 3339.", pattern=RFC3339, pattern_hint=RFC3339_HINT)
    scope: ExclusionScope = setting(
        "`NO_UPGRADES` (at most 30 days), `NO_MINOR_UPGRADES` or `NO_MINOR_OR_NODE_UPGRADES` (at most 180 days).",
        ExclusionScope.NO_UPGRADES,
    )

    def validate(self, path: str, problems: Problems) -> None:
        start, end = _rfc3339(self.start), _rfc3339(self.end)
        if start is None or end is None:
            return
        days = (end - start).total_seconds() / 86400
        longest = MAX_EXCLUSION_DAYS[self.scope.value]
        if days <= 0:
            problems.add(join(path, "end"), f"got {self.end!r}, not after start {self.start!r}; give a later end")
        elif days > longest:
            problems.add(join(path, "end"), f"the exclusion lasts {days:.1f} days; GKE allows at most {longest} days "
                                            f"for scope {self.scope.value}; shorten it or use a narrower scope")


@dataclass(frozen=True)
class MaintenanceConfig:
    """When GKE may upgrade and repair the cluster: a recurring window plus exclusions. Unset: any time."""

    window_start: Optional[str] = setting(
        "First occurrence's start, RFC 3339 (`2026-01-03T00:00:00Z`); its time of day repeats.", None,
        pattern=RFC3339, pattern_hint=RFC3339_HINT,
    )
    window_end: Optional[str] = setting(
        "First occurrence's end, RFC 3339 (the window is `windowEnd - windowStart` long, at least 4 hours).", None,
        pattern=RFC3339, pattern_hint=RFC3339_HINT,
    )
    window_recurrence: Optional[str] = setting(
        "How the window repeats (RFC 5545 RRULE): `FREQ=DAILY` or `FREQ=WEEKLY;BYDAY=SA,SU`.", None,
        pattern=r"FREQ=DAILY|FREQ=WEEKLY;BYDAY=(MO|TU|WE|TH|FR|SA|SU)(,(MO|TU|WE|TH|FR|SA|SU))*",
        pattern_hint="give FREQ=DAILY or FREQ=WEEKLY;BYDAY=<days> such as FREQ=WEEKLY;BYDAY=SA,SU",
    )
    exclusions: Mapping[str, MaintenanceExclusionConfig] = setting(
        "Periods without upgrades, keyed by a name.", EMPTY, key_pattern=NAME_PATTERN
    )

    @property
    def has_window(self) -> bool:
        return self.window_start is not None

    def validate(self, path: str, problems: Problems) -> None:
        parts = (self.window_start, self.window_end, self.window_recurrence)
        if any(p is not None for p in parts) and not all(p is not None for p in parts):
            problems.add(join(path, "windowStart"), "windowStart, windowEnd and windowRecurrence go together; set all "
                                                    "three or none")
            return
        if self.window_start is None or self.window_end is None or self.window_recurrence is None:
            return
        start, end = _rfc3339(self.window_start), _rfc3339(self.window_end)
        if start is None or end is None:
            return
        hours = (end - start).total_seconds() / 3600
        if hours < MIN_WINDOW_HOURS or hours >= 24:
            problems.add(join(path, "windowEnd"), f"the window is {hours:g} hours long; GKE needs at least "
                                                  f"{MIN_WINDOW_HOURS} hours at a stretch, and less than a day")
            return
        days_per_week = 7 if self.window_recurrence == "FREQ=DAILY" else len(
            set(self.window_recurrence.split("BYDAY=", 1)[1].split(",")))
        # Four whole weeks fit any 32-day period: the least the window can offer in one.
        available = 4 * days_per_week * hours
        if available < MIN_WINDOW_HOURS_PER_32_DAYS:
            problems.add(join(path, "windowRecurrence"),
                         f"offers {available:g} hours in some 32-day periods; GKE needs at least "
                         f"{MIN_WINDOW_HOURS_PER_32_DAYS} (more days or a longer window)")


@dataclass(frozen=True)
class GkeClusterConfig:
    """The stack's GKE cluster; required when any deployment has `platform: gke`."""

    location: str = setting(
        "Zone (or region) of the cluster, one that offers the node pools' accelerators "
        "(TPU v6e: e.g. `us-east5-b`, `europe-west4-a`).",
    )
    name: Optional[str] = setting(f"Cluster name; default `{defaults.shown(defaults.CLUSTER_NAME)}`.", None,
                                  pattern=NAME_PATTERN + r"|[a-z][a-z0-9-]{0,38}[a-z0-9]")
    autopilot: bool = setting("Create an Autopilot cluster instead of Standard (node pools are then managed by GKE).", False)
    release_channel: ReleaseChannel = setting("GKE release channel.", ReleaseChannel.REGULAR)
    min_master_version: Optional[str] = setting(
        "Lowest control-plane version to accept, as GKE takes it (`1.33`, `1.33.5` or `1.33.5-gke.1080000`); "
        "unset: the version the release channel gives new clusters. Checked against what the node pools need "
        "(TPU v6e: 1.31.2-gke.1115000 or later).",
        None,
        pattern=r"1\.\d{1,3}(\.\d{1,3}(-gke\.\d{1,10})?)?",
        pattern_hint="give a GKE version such as 1.33, 1.33.5 or 1.33.5-gke.1080000",
    )
    network: Optional[str] = setting("VPC network self link or name; default: the project's default network.", None)
    subnetwork: Optional[str] = setting("Subnetwork self link or name.", None)
    private_nodes: Optional[bool] = setting(
        "Nodes without external IPs, egress through a Cloud NAT the stack creates; default: on in prod, off elsewhere.", None
    )
    master_authorized_networks: tuple[str, ...] = setting(
        "CIDRs allowed to reach the control plane (e.g. your CI runners' range); empty: any address (IAM still applies).", ()
    )
    master_ipv4_cidr_block: Optional[str] = setting(
        "A /28 for a VPC-peered control plane of a private cluster; default: GKE's own (Private Service Connect).", None
    )
    node_pools: Mapping[str, NodePoolConfig] = setting(
        "Accelerator node pools keyed by a stable name.", EMPTY, key_pattern=NAME_PATTERN
    )
    metrics_adapter_image: Optional[str] = setting(
        "Image of the custom-metrics adapter the HPAs read vLLM metrics through; default: the pinned upstream release "
        "(components/metrics_adapter.py). A tag or `<tag>@sha256:<digest>` (required in prod), never `latest`.", None
    )
    maintenance: MaintenanceConfig = setting(
        "Maintenance window and exclusions: keep GKE's upgrades (each restarts replicas that reload and recompile) "
        "out of serving hours.", MaintenanceConfig()
    )

    def validate(self, path: str, problems: Problems) -> None:
        if self.metrics_adapter_image is not None:
            _validate_image(self.metrics_adapter_image, join(path, "metricsAdapterImage"), problems)


@dataclass(frozen=True)
class AlertThresholds:
    """Alert thresholds. A deployment's `alerts` overrides the stack's `monitoring.alerts` key by
    key; anything unset in both takes the default named here (stacks/monitoring.py applies it)."""

    queue_waiting: Optional[float] = setting(
        f"Sustained queue: requests waiting per replica, averaged (default {defaults.ALERT_QUEUE_WAITING:g}, the HPA's "
        "target).", None, minimum=0
    )
    kv_cache_usage: Optional[float] = setting(
        f"KV cache saturated: fraction of the KV cache in use, at the fullest replica (default "
        f"{defaults.ALERT_KV_CACHE_USAGE:g}).", None,
        minimum=0.01, maximum=1,
    )
    error_ratio: Optional[float] = setting(
        f"Error ratio: share of requests answered with a server error over 5 minutes (default "
        f"{defaults.ALERT_ERROR_RATIO:g}).", None,
        minimum=0.0001, maximum=1,
    )
    ttft_p95_seconds: Optional[float] = setting(
        f"Latency objective: time to first token at the 95th percentile, in seconds (default "
        f"{defaults.ALERT_TTFT_P95_SECONDS:g}).", None, minimum=0.01
    )
    sustained_minutes: Optional[int] = setting(
        f"How long a condition must hold before it alerts, in minutes (default {defaults.ALERT_SUSTAINED_MINUTES}).", None,
        minimum=1, maximum=1440
    )
    idle: Optional[bool] = setting(
        "Alert on an idle accelerator (billed, no tokens generated) (default: on in dev only).", None
    )
    idle_minutes: Optional[int] = setting(
        f"Idle accelerator: minutes without a generated token while a replica runs (default "
        f"{defaults.ALERT_IDLE_MINUTES}).", None,
        minimum=5, maximum=1440,
    )


@dataclass(frozen=True)
class MonitoringConfig:
    """The stack's Cloud Monitoring dashboard and alert policies."""

    enabled: bool = setting("Create the dashboard and the alert policies.", True)
    notification_emails: tuple[str, ...] = setting(
        "Email addresses to notify; an email notification channel is created for each.", (),
        pattern=r"[^@\s]+@[^@\s]+\.[^@\s]+", pattern_hint="give an email address like oncall@example.com",
    )
    notification_channels: tuple[str, ...] = setting(
        "Existing notification channels to notify (`projects/<project>/notificationChannels/<id>`).", (),
        pattern=r"projects/[^/]+/notificationChannels/[0-9]+",
        pattern_hint="give a channel as projects/<project>/notificationChannels/<id> (gcloud beta monitoring channels list)",
    )
    alerts: AlertThresholds = setting("Alert thresholds for every deployment of the stack.", AlertThresholds())
    cloud_run_sidecar_image: Optional[str] = setting(
        "Image of the Prometheus sidecar that scrapes vLLM on Cloud Run; default: the pinned Google release "
        "(components/cloudrun.py). A tag or `<tag>@sha256:<digest>` (required in prod), never `latest`.", None
    )

    def validate(self, path: str, problems: Problems) -> None:
        if self.cloud_run_sidecar_image is not None:
            _validate_image(self.cloud_run_sidecar_image, join(path, "cloudRunSidecarImage"), problems)


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

    machine_type: Optional[str] = setting(
        "Vertex AI machine type, e.g. `g2-standard-12`; GKE Autopilot: the accelerator machine Autopilot provisions, "
        "e.g. `ct6e-standard-8t` (TPU v6e 2x4).", None)
    accelerator_type: Optional[str] = setting(
        "Vertex AI: `NVIDIA_L4`, `NVIDIA_TESLA_A100`, ...; Cloud Run: `nvidia-l4` or `nvidia-rtx-pro-6000`.", None
    )
    accelerator_count: Optional[int] = setting("Accelerators per replica (Vertex AI).", None, minimum=1, maximum=16)
    cpu: Optional[str] = setting(
        f"Cloud Run CPU limit per instance (default {hardware_defaults()['cloudrun']['cpu']}; at least the GPU minimum).", None,
        pattern=r"\d{1,4}", pattern_hint="give a whole number of vCPUs such as 8 (Cloud Run takes whole vCPUs above 1)",
    )
    memory: Optional[str] = setting(
        f"Cloud Run memory limit per instance (default {hardware_defaults()['cloudrun']['memory']}; at least the GPU minimum).", None,
        pattern=r"\d{1,7}(Gi|Mi)", pattern_hint="give a size such as 32Gi or 16384Mi",
    )
    node_pool: Optional[str] = setting("GKE Standard: the `gke.nodePools` entry to run on.", None)
    tpu_topology: Optional[str] = setting(
        "GKE Autopilot: TPU slice topology Autopilot provisions with `machineType`, e.g. `2x4`; default: the "
        "single-host topology of the machine type.", None, pattern=r"\d{1,2}x\d{1,2}(x\d{1,2})?",
        pattern_hint="a topology looks like 2x4 or 2x2x2",
    )


# Flags the renderer (stacks/vllm.py) emits from typed keys or from the platform. The same flag
# in extraArgs would contradict it (vLLM takes the last one), so it is refused with the key to use.
RENDERED_FLAGS: Mapping[str, str] = types.MappingProxyType({
    "--host": "the platform (vLLM must listen on 0.0.0.0 for probes and traffic)",
    "--port": "the platform's container port",
    "--model": "`model` (and, on Cloud Run, `cloudrun.weights`)",
    "--served-model-name": "`vllm.servedModelName`",
    "--revision": "`modelRevision`",
    "--tensor-parallel-size": "`vllm.tensorParallelSize`",
    "-tp": "`vllm.tensorParallelSize`",
    "--gpu-memory-utilization": "`vllm.gpuMemoryUtilization`",
    "--max-model-len": "`vllm.maxModelLen`",
    "--max-num-seqs": "`vllm.maxNumSeqs`",
    "--max-num-batched-tokens": "`vllm.maxNumBatchedTokens`",
    "--dtype": "`vllm.dtype`",
    "--kv-cache-dtype": "`vllm.kvCacheDtype`",
    "--download-dir": "the platform's weights location",
    "--enforce-eager": "`vllm.enforceEager`",
    "--enable-prefix-caching": "`vllm.enablePrefixCaching`",
    "--no-enable-prefix-caching": "`vllm.enablePrefixCaching`",
    "--trust-remote-code": "`vllm.trustRemoteCode`",
    "--swap-space": "`vllm.swapSpace`",
    "--disable-log-stats": "`vllm.disableLogStats`",
    "--chat-template": "`vllm.chatTemplate`",
    "--model-type": "`vllm.modelType`",
    "--limit-mm-per-prompt": "`vllm.limitMmPerPrompt`",
})
# Rendered only when `lora.adapters` lists adapters; without adapters the tutorial's bare
# `--enable-lora` stays allowed in extraArgs (with a throughput warning).
LORA_FLAGS: Mapping[str, str] = types.MappingProxyType({
    "--enable-lora": "`lora.adapters`", "--max-loras": "`lora.maxLoras`",
    "--max-cpu-loras": "`lora.maxCpuLoras`", "--max-lora-rank": "`lora.maxLoraRank`",
})


def extra_arg_flag(arg: str) -> str:
    """`--max_model_len=4096` -> `--max-model-len` (vLLM's parser takes either spelling)."""
    name = arg.split("=", 1)[0]
    return "--" + name[2:].replace("_", "-") if name.startswith("--") else name


@dataclass(frozen=True)
class VllmConfig:
    """vLLM server settings: a typed core, each emitted only when it applies, plus `extraArgs`."""

    max_model_len: Optional[int] = setting(
        f"Longest sequence (prompt + output) served; default {defaults.MAX_MODEL_LEN}, capped by the model's context "
        "and by what fits the devices.", None, minimum=16)
    gpu_memory_utilization: Optional[float] = setting(
        f"Fraction of device memory vLLM may use; default {GPU_MEMORY_UTILIZATION:.2f} on GPUs, "
        f"{CATALOG.tpu_v6e.gpu_memory_utilization:.2f} on TPU v6e (Google's vLLM recipes for Trillium).", None, minimum=0.1, maximum=0.99
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
            where = f"{path}.extraArgs[{index}]"
            flag = extra_arg_flag(arg)
            if not arg.startswith("--") and flag != "-tp":
                problems.add(where, f"got {arg!r}; write each flag as --flag or --flag=value")
            elif flag in RENDERED_FLAGS:
                owner = RENDERED_FLAGS[flag]
                fix = f"set {owner} instead" if owner.startswith("`") else f"{owner} decides it"
                problems.add(where, f"got {arg!r}; {flag} is already rendered from {owner}, and a second value would "
                                    f"contradict it. Remove it from extraArgs; {fix}")


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters served next to the base model, read from the model bucket."""

    adapters: Mapping[str, str] = setting(
        "Adapter name → object prefix in the model bucket (e.g. `loras/support-v3`), or `hf://<org>/<repo>` for a "
        "Hugging Face Hub adapter. Requests name the adapter; the client sends its path as `lora_id`.",
        EMPTY, key_pattern=r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"
    )
    max_loras: int = setting("Adapters active in one batch.", 1, minimum=1)
    max_cpu_loras: Optional[int] = setting("Adapters cached in CPU memory; at least maxLoras.", None, minimum=1)
    max_lora_rank: int = setting("Largest adapter rank.", 16, minimum=1, maximum=512)

    def validate(self, path: str, problems: Problems) -> None:
        for name, source in self.adapters.items():
            problem = adapter_source_problem(source) if isinstance(source, str) else f"{source!r} is not text"
            if problem:
                problems.add(join(path, f"adapters.{name}"), f"got {problem}")
        if self.max_cpu_loras is not None and self.max_cpu_loras < self.max_loras:
            problems.add(join(path, "maxCpuLoras"),
                         f"got {self.max_cpu_loras}, below maxLoras {self.max_loras}; vLLM requires maxCpuLoras >= maxLoras")


@dataclass(frozen=True)
class ScalingConfig:
    """Replicas (Vertex AI, GKE) or instances (Cloud Run)."""

    min_replicas: Optional[int] = setting(
        f"Fewest replicas; default {defaults.CLOUDRUN_MIN_REPLICAS} on Cloud Run, {defaults.MIN_REPLICAS} elsewhere "
        f"(Vertex AI keeps at least {defaults.VERTEX_REPLICA_FLOOR}, as does the GKE HPA).", None, minimum=0, maximum=1000)
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
    delete_before_replace: bool = setting(
        "When a change replaces the endpoint (anything but replicas and autoscaling, which update in place): "
        "delete the old endpoint first, for a GPU quota that cannot hold two deployments (serves nothing until the "
        "new one is healthy). Default: deploy the new endpoint first, then delete the old one (no downtime).", False
    )
    existing_endpoint: Optional[str] = setting(
        "Adopt an endpoint created outside the stack (`projects/<p>/locations/<region>/endpoints/<id>` or the id): "
        "the stack exports its client outputs and grants LoRA read access, but never deploys to, changes or deletes it.",
        None, pattern=r"(projects/[a-z0-9-]+/locations/[a-z0-9-]+/endpoints/)?[0-9]+",
        pattern_hint="give projects/<project>/locations/<region>/endpoints/<numeric id>, or the numeric id",
    )


@dataclass(frozen=True)
class CloudRunConfig:
    """Cloud Run GPU service options."""

    weights: WeightsSource = setting(
        "Where the weights come from: `stream` (the bucket copy made by the weights-copy job, streamed from gs:// by "
        "vLLM's Run:ai streamer), `gcs` (the same copy on a read-only Cloud Storage volume), `image` (baked into an "
        "image by Cloud Build) or `hub` (downloaded by every instance; the service holds the token).",
        WeightsSource.STREAM)
    gpu_zonal_redundancy: bool = setting(
        "Reserve capacity for zonal failover (dearer; separate quota). Off = best effort.", True
    )
    max_concurrency: Optional[int] = setting(
        "Requests per instance at once; default: vLLM's max_num_seqs (at most 1000) so queuing happens in vLLM.", None, minimum=1, maximum=1000
    )
    request_timeout_seconds: int = setting("Request timeout (s).", 600, minimum=1, maximum=3600)
    startup_timeout_seconds: Optional[int] = setting(
        "How long the startup probe allows for model load (s); Cloud Run allows up to 1800 with a GPU. Default: "
        "estimated from the weights' size, the platform's load rate and the compile time "
        "(`stacks/catalog/data/startup.yaml`), at most 1800; the plan shows the arithmetic.",
        None, minimum=60, maximum=1800,
    )
    ingress: Ingress = setting("Who can reach the URL at the network level (IAM still applies).", Ingress.ALL)
    invokers: tuple[str, ...] = setting(
        "IAM members allowed to invoke, e.g. `group:ml@example.com`. Public members need `access.allowPublicInvokers`.", ()
    )
    gcs_prefix: Optional[str] = setting(
        "With `weights: stream` or `gcs`: object prefix of weights placed in the bucket by hand (no copy job); "
        "default: the weights-copy job's `models/<model id>/<modelRevision>`.", None)
    compile_cache: bool = setting(
        "Keep vLLM's torch.compile cache between instances: a sidecar restores it from "
        "`gs://<bucket>/compile-cache/<key>/` into an in-memory volume before the server starts and saves it after "
        "warm-up; the key changes with the model, revision, flags, GPU and image.", True
    )


@dataclass(frozen=True)
class GkeWorkloadConfig:
    """Kubernetes options of a GKE deployment."""

    namespace: str = setting("Namespace of the workload.", "llm-serving", pattern=r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
                             pattern_hint="use a DNS label: lowercase letters, digits and hyphens")
    public_load_balancer: bool = setting(
        "Expose the Service on an external load balancer (needs `apiKey`, `acknowledgePublicEndpoint` and, in prod, "
        "`acknowledgePublicEndpointInProd`). Default: an internal load balancer.", False
    )
    acknowledge_public_endpoint: bool = setting(
        "Confirms that `publicLoadBalancer` is meant: the model is reachable from the internet with the API key.", False
    )
    acknowledge_public_endpoint_in_prod: bool = setting(
        "Second confirmation a prod stack needs for `publicLoadBalancer`.", False
    )
    api_key: bool = setting(
        "Require an API key (`Authorization: Bearer`) on every `/v1` route; `/health` and `/metrics` stay open.", True
    )
    api_key_secret: Optional[str] = setting(
        "Existing Secret Manager secret holding the API key (`projects/<p>/secrets/<name>` or an id in this project); "
        f"default: a generated key in a new secret `{defaults.shown(defaults.API_KEY_SECRET)}`.", None,
        pattern=r"(projects/[^/]+/secrets/)?[A-Za-z0-9_-]{1,255}",
        pattern_hint="give a secret id or projects/<project>/secrets/<id>",
    )
    allowed_namespaces: tuple[str, ...] = setting(
        "Namespaces whose pods may reach the model (the NetworkPolicy also admits Managed Prometheus).", ()
    )
    allowed_cidrs: tuple[str, ...] = setting(
        "Client address ranges that may reach the model through the load balancer, e.g. `10.128.0.0/9`. "
        "Empty with no namespaces: nothing but Managed Prometheus and `kubectl port-forward` reaches it.", ()
    )
    startup_timeout_seconds: Optional[int] = setting(
        "Startup probe budget for weight load plus compilation (s). Default: estimated from the weights' size, the "
        "platform's load rate and the accelerator's cold compile time (`stacks/catalog/data/startup.yaml`), at most "
        "14400; the plan shows the arithmetic.", None, minimum=60, maximum=14400
    )
    compile_cache: bool = setting(
        "Keep vLLM's compile cache (XLA on TPU, torch.compile on GPU) on the node's disk, restored before the server "
        "starts from `gs://<bucket>/compile-cache/<key>/` and saved there after warm-up; the key changes with the "
        "model, revision, flags, accelerator, topology and image.", True
    )
    scale_to_zero: bool = setting(
        "Scale the Deployment to zero replicas when idle and wake it on the first request (KEDA and its HTTP "
        "add-on; the node pool then scales to zero nodes). Clients call the wake URL inside the cluster; the first "
        "request waits for a node and the model to load. KEDA then owns the replicas instead of the HPA. Prod "
        "needs `acknowledgeScaleToZeroInProd`.", defaults.SCALE_TO_ZERO
    )
    scale_to_zero_idle_seconds: Optional[int] = setting(
        f"With `scaleToZero`: seconds without a request before the replicas go to zero; default "
        f"{defaults.SCALE_TO_ZERO_IDLE_SECONDS}.", None, minimum=60, maximum=86400
    )
    acknowledge_scale_to_zero_in_prod: bool = setting(
        "Confirms `scaleToZero` in a prod stack, where the first request after an idle period waits for a node "
        "and a model load.", False
    )
    drain_seconds: int = setting(
        f"How long a stopping replica may finish its requests (vLLM `--shutdown-timeout`, when the pinned vLLM has "
        f"it); the pod's grace period adds the {defaults.PRESTOP_SLEEP_SECONDS} s preStop sleep and "
        f"{defaults.TERMINATION_MARGIN_SECONDS} s, and {defaults.COMPILE_CACHE_FINAL_SAVE_SECONDS} s for the compile "
        f"cache's final save when `compileCache` is on.", defaults.DRAIN_SECONDS, minimum=0, maximum=3600
    )


@dataclass(frozen=True)
class DeploymentConfig:
    """One model served on one platform, keyed by a stable name."""

    platform: Platform = setting("Where it runs.")
    model: str = setting("Hugging Face model id, e.g. `meta-llama/Llama-3.1-8B-Instruct`.")
    model_revision: Optional[str] = setting(
        "Hugging Face commit (40 hex digits) of the weights, used by every platform; required in prod.", None,
        pattern=r"[0-9a-f]{40}", pattern_hint="give the full commit sha from the model's Hugging Face 'Files and versions' history",
    )
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
    alerts: Optional[AlertThresholds] = setting("Alert thresholds for this deployment; overrides `monitoring.alerts` key by key.", None)

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
        if hf_model_id_problem(self.model):
            problems.add(join(path, "model"), str(hf_model_id_problem(self.model)))
        if self.lora.adapters:
            for index, arg in enumerate(self.vllm.extra_args):
                flag = extra_arg_flag(arg)
                if flag in LORA_FLAGS:
                    problems.add(f"{path}.vllm.extraArgs[{index}]",
                                 f"got {arg!r}; with lora.adapters set, {flag} is rendered from "
                                 f"{LORA_FLAGS[flag]}: remove it from extraArgs")
        self._validate_scaling(join(path, "scaling"), problems)
        if self.platform is Platform.GKE:
            for index, arg in enumerate(self.vllm.extra_args):
                if extra_arg_flag(arg) == "--shutdown-timeout":
                    problems.add(f"{path}.vllm.extraArgs[{index}]",
                                 f"got {arg!r}; on GKE the drain is rendered from gke.drainSeconds (it also sizes the "
                                 "pod's grace period): set that and remove the flag here")
            namespace = self.gke_options.namespace
            where = join(path, "gke.namespace")
            if dns_label_problem(namespace):
                problems.add(where, str(dns_label_problem(namespace)))
            elif namespace in SYSTEM_NAMESPACES or namespace in (METRICS_ADAPTER_NAMESPACE, KEDA_NAMESPACE):
                owner = ("the custom-metrics adapter this stack installs" if namespace == METRICS_ADAPTER_NAMESPACE
                         else "KEDA, which this stack installs for scale to zero" if namespace == KEDA_NAMESPACE
                         else "Kubernetes itself")
                problems.add(where, f"got {namespace!r}, a namespace owned by {owner}; choose your own, "
                                    "e.g. llm-serving")

    def _validate_scaling(self, path: str, problems: Problems) -> None:
        s = self.scaling
        if self.platform is Platform.VERTEX:
            if s.min_replicas is not None and s.min_replicas < 1:
                problems.add(join(path, "minReplicas"), f"got {s.min_replicas}; a Vertex AI deployment keeps at least "
                                                        "1 replica (it cannot scale to zero). Set 1 or more, or "
                                                        "remove the deployment when unused")
            if s.target is not None and not (float(s.target).is_integer() and 1 <= s.target <= 100):
                hint = f" (did you mean {round(s.target * 100):g}?)" if 0 < s.target < 1 else ""
                problems.add(join(path, "target"), f"got {s.target:g}; Vertex AI scales on accelerator duty cycle, "
                                                   f"a whole percent from 1 to 100{hint}")
        elif self.platform is Platform.GKE:
            scale_to_zero = self.gke_options.scale_to_zero
            if s.min_replicas is not None and s.min_replicas < 1 and not scale_to_zero:
                problems.add(join(path, "minReplicas"), f"got {s.min_replicas}; the HorizontalPodAutoscaler keeps at "
                                                        "least 1 replica. Set 1 or more, or set gke.scaleToZero: true "
                                                        "to scale to zero with KEDA")
            elif s.min_replicas is not None and s.min_replicas > 0 and scale_to_zero:
                problems.add(join(path, "minReplicas"), f"got {s.min_replicas} with gke.scaleToZero true, which scales "
                                                        "to 0 when idle; remove minReplicas (or set 0), or turn "
                                                        "scaleToZero off to keep replicas running")
            if s.target is not None:
                if s.metric is AutoscalingMetric.KV_CACHE_USAGE and not 0 < s.target <= 1:
                    problems.add(join(path, "target"), f"got {s.target:g}; kv_cache_usage is a fraction of the KV "
                                                       "cache, give a target above 0 and at most 1 (e.g. 0.8)")
                elif s.metric is AutoscalingMetric.NUM_REQUESTS_WAITING and s.target <= 0:
                    problems.add(join(path, "target"), f"got {s.target:g}; give the waiting requests per replica "
                                                       "that should trigger a scale-up, above 0 (e.g. 10)")
        elif s.target is not None:
            problems.add(join(path, "target"), f"got {s.target:g}; Cloud Run scales on concurrent requests, not on "
                                               "a target: remove it and set cloudrun.maxConcurrency instead")

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
    )
    bucket: BucketConfig = setting("The model bucket.", BucketConfig())
    registry: RegistryConfig = setting("Artifact Registry repositories.", RegistryConfig())
    access: AccessConfig = setting("Access guardrails.", AccessConfig())
    check_quota: bool = setting("Compare accelerator quota with what the stack needs at max replicas during preview.", True)
    gke: Optional[GkeClusterConfig] = setting("The GKE cluster (for `platform: gke`).", None)
    monitoring: MonitoringConfig = setting("Dashboard, alert policies and who they notify.", MonitoringConfig())
    deployments: Mapping[str, DeploymentConfig] = setting(
        "Models to serve, keyed by a stable name (renaming one replaces its resources).", EMPTY, key_pattern=NAME_PATTERN
    )


# Labels the program sets on every resource (plus `deployment` on a deployment's own); user labels
# may not replace them.
OWN_LABELS = ("managed-by", "app", "environment", "deployment")

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

    def token_secret_location(self) -> Optional[tuple[str, str]]:
        """(project, secret id) of the secret the deployments read the token from; None without a token."""
        existing = self.settings.hf_token_secret
        if self.hf_token_set:
            return self.project, defaults.HF_TOKEN_SECRET.format(prefix=self.prefix)
        if existing is None:
            return None
        if existing.startswith("projects/"):
            _, project, _, secret = existing.split("/")
            return project, secret
        return self.project, existing

    def labels(self, **extra: str) -> dict[str, str]:
        """Labels for a resource: the stack's own, the user's, then per-resource ones."""
        base = {"managed-by": "pulumi", "app": "llm-serving", "environment": self.environment.value}
        return {**base, **dict(self.settings.labels), **extra}


def load(values: Mapping[str, Any], secret_keys: set[str] | frozenset[str], *, source: str, stack: str) -> StackConfig:
    """Parse a stack's config (full keys such as ``llm-serving:deployments``) or raise ConfigError.

    Structured values may arrive as JSON strings (how the Pulumi engine passes them) or as
    already-decoded YAML. Whatever the values are, the outcome is a StackConfig or a
    ConfigError: an exception no rule anticipated is reported as a problem, never a traceback.
    """
    try:
        return _load(values, secret_keys, source=source, stack=stack)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - see the docstring
        raise ConfigError(source, [Problem(NAMESPACE + ":", _unreadable(error))]) from None


def _load(values: Mapping[str, Any], secret_keys: set[str] | frozenset[str], *, source: str, stack: str) -> StackConfig:
    problems = Problems()
    raw: dict[str, Any] = {}
    for full_key, value in values.items():
        namespace, _, name = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        if name == "hfToken":
            continue
        raw[name] = _decode(value)

    for full_key, value in values.items():
        if full_key != HF_TOKEN_KEY and full_key not in secret_keys:
            _token_scan(_decode(value), full_key, problems)
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
    elif looks_like_token(str(project)):
        pass  # reported by the token scan, without the value
    elif project_id_problem(str(project)):
        problems.add(PROJECT_KEY, str(project_id_problem(str(project))))
    if not region:
        problems.add(REGION_KEY, "is required: the region for regional resources, e.g. us-central1 (`pulumi config set gcp:region us-central1`)")
    elif not looks_like_token(str(region)):
        _validate_region(str(region), problems)

    hf_token_set = HF_TOKEN_KEY in values and values[HF_TOKEN_KEY] not in (None, "")
    if hf_token_set and HF_TOKEN_KEY not in secret_keys:
        problems.add(HF_TOKEN_KEY, "is stored in plaintext in the stack file; remove it and set it again with "
                                   "`pulumi config set --secret llm-serving:hfToken <token>`")

    settings = _parse_settings(raw, problems, source)
    if not is_missing(settings):
        try:
            _validate_stack(settings, str(project or ""), str(region or ""), problems, gke_given="gke" in raw)
        except Exception as error:  # noqa: BLE001 - a value no rule anticipated is a config problem, never a traceback
            problems.add(NAMESPACE + ":", _unreadable(error))
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
    """A value as the engine passes it: structured values arrive as JSON text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value  # not JSON after all: the key's own rules refuse the text
    return value


def runtime_account_id(prefix: str, name: str) -> str:
    """The service account a Cloud Run deployment runs as."""
    return f"{prefix}-{name}"


def copy_account_id(prefix: str, name: str) -> str:
    """The weights-copy job's account id: the only identity that reads the Hugging Face token."""
    return f"{prefix}-{name}"[:25].rstrip("-") + "-copy"


def copies_weights(d: DeploymentConfig) -> bool:
    """Does a weights-copy job put this deployment's weights into the bucket? GKE always; Cloud Run when it
    reads from the bucket and no hand-placed prefix is given; Vertex AI never (its Model Garden deployment
    resource takes the model from the Hub only: README "How weights and caches reach a replica")."""
    if d.platform is Platform.GKE:
        return True
    return (d.platform is Platform.CLOUDRUN and d.cloudrun_options.weights in (WeightsSource.STREAM, WeightsSource.GCS)
            and d.cloudrun_options.gcs_prefix is None)


def build_account_id(prefix: str, name: str) -> str:
    """The image-build account's id: distinct from the runtime's, at most 30 characters."""
    return f"{prefix}-{name}"[:24].rstrip("-") + "-build"


def default_bucket_name(project: str, prefix: str) -> str:
    # Cut to the bucket-name limit, never ending on a separator (a bucket name ends with a letter or digit).
    return defaults.BUCKET_NAME.format(project=project, prefix=prefix)[:63].rstrip("-._")


def cluster_name(settings: Settings) -> str:
    prefix = settings.name_prefix or defaults.NAME_PREFIX.format(environment=settings.environment.value)
    return (settings.gke.name if settings.gke and settings.gke.name else None) or defaults.CLUSTER_NAME.format(prefix=prefix)


def node_account_id(cluster: str) -> str:
    """The GKE node service account (GkeClusterArgs' default)."""
    return f"{cluster}-nodes"


def memory_gib(memory: str) -> float:
    """`32Gi` -> 32.0, `16384Mi` -> 16.0 (Cloud Run memory sizes)."""
    number = float(re.sub(r"[^\d.]", "", memory) or 0)
    return number / 1024 if memory.endswith("Mi") else number


def _token_scan(value: Any, path: str, problems: Problems) -> None:
    """Every token-shaped string in plain config, reported at its key path and never echoed."""
    if isinstance(value, str):
        if looks_like_token(value):
            problems.add(path, f"holds {TOKEN_HINT}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _token_scan(item, join(path, str(key)), problems)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _token_scan(item, f"{path}[{index}]", problems)


def _validate_region(region: str, problems: Problems) -> None:
    known = locations().regions
    if region in known:
        return
    zone_region = locations().zone(region)
    if zone_region is not None:
        problems.add(REGION_KEY, f"got {region!r}, which is a zone; gcp:region takes a region: set it to "
                                 f"{zone_region.name!r} (a GKE cluster's zone goes in {NAMESPACE}:gke.location)")
        return
    problems.add(REGION_KEY, f"got {region!r}, not a Google Cloud region{did_you_mean(region, list(known))}; "
                             f"regions look like us-central1 (if Google added it recently, add it to "
                             "stacks/catalog/data/locations.yaml with its source)")


def _validate_labels(labels: Mapping[str, str], path: str, problems: Problems, *, kubernetes: bool = False) -> None:
    for key, value in labels.items():
        if key in OWN_LABELS:
            problems.add(join(path, key), f"is a label the stack sets itself ({', '.join(OWN_LABELS)}: the policy "
                                          "pack and the outputs rely on them); choose another key")
            continue
        problem = gcp_label_problem(key, value) or (k8s_label_problem(key, value) if kubernetes else None)
        if problem:
            problems.add(join(path, key), f"{problem}; fix or remove it")
    if len(labels) > GCP_LABELS_MAX:
        problems.add(path, f"has {len(labels)} labels; a resource takes at most {GCP_LABELS_MAX}")


def _unreadable(error: BaseException) -> str:
    detail = " ".join(str(error).split())[:160]
    return (f"this value could not be read ({type(error).__name__}: {detail}); check its type and size against "
            "the config reference in README.md")


def _parse_settings(raw: dict[str, Any], problems: Problems, source: str) -> Any:
    """``parse(Settings, ...)``, where a value that makes parsing fail unexpectedly (a case no rule
    anticipated) becomes a problem naming its key; the other keys are still checked."""
    attempt = Problems()
    try:
        settings = parse(Settings, raw, NAMESPACE + ":", attempt)
    except Exception:  # noqa: BLE001 - find the key that breaks parsing, below
        unreadable: dict[str, BaseException] = {}
        for name, value in raw.items():
            try:
                parse(Settings, {name: value}, NAMESPACE + ":", Problems())
            except Exception as error:  # noqa: BLE001 - reported as this key's problem
                unreadable[name] = error
        if not unreadable:
            unreadable = {"": RuntimeError("the keys together could not be parsed")}
        for name, failure in unreadable.items():
            problems.add(join(NAMESPACE + ":", name), _unreadable(failure))
        attempt = Problems()
        try:
            settings = parse(Settings, {k: v for k, v in raw.items() if k not in unreadable}, NAMESPACE + ":", attempt)
        except Exception as error:  # noqa: BLE001 - nothing more can be checked
            problems.add(NAMESPACE + ":", _unreadable(error))
            raise ConfigError(source, problems.items) from None
    problems.items.extend(attempt.items)
    return settings


def _cidr_problem(cidr: str) -> Optional[str]:
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        return f"got {cidr!r}; give a network in CIDR notation with no host bits set, e.g. 10.128.0.0/9"
    return None


def _validate_gke_access(options: GkeWorkloadConfig, env: Environment, path: str, problems: Problems) -> None:
    """Who can reach a GKE model: a public endpoint needs the key and is confirmed twice in prod."""
    for cidr in options.allowed_cidrs:
        problem = _cidr_problem(cidr)
        if problem:
            problems.add(path + ".allowedCidrs", problem)
    for namespace in options.allowed_namespaces:
        problem = dns_label_problem(namespace)
        if problem:
            problems.add(path + ".allowedNamespaces", problem)
    if options.api_key_secret is not None and not options.api_key:
        problems.add(path + ".apiKeySecret", "is set but apiKey is false; remove one of them")
    _validate_scale_to_zero(options, env, path, problems)
    if not options.public_load_balancer:
        return
    if not options.api_key:
        problems.add(path + ".publicLoadBalancer",
                     "is true but apiKey is false: anyone on the internet could call the model. Keep apiKey on")
    if not options.acknowledge_public_endpoint:
        problems.add(path + ".publicLoadBalancer",
                     "is true without acknowledgePublicEndpoint: the model would be reachable from the internet "
                     "(with the API key). Set `" + path + ".acknowledgePublicEndpoint: true` if that is intended, "
                     "or remove publicLoadBalancer to keep the internal load balancer")
    if env is Environment.PROD and not options.acknowledge_public_endpoint_in_prod:
        problems.add(path + ".publicLoadBalancer",
                     "is true in a prod stack; prod also needs `" + path + ".acknowledgePublicEndpointInProd: true` "
                     "(a second, prod-only confirmation), or keep the internal load balancer")
    if not options.allowed_cidrs:
        problems.add(path + ".allowedCidrs",
                     "is empty, so the NetworkPolicy would drop every client of the public load balancer; list the "
                     "client ranges (0.0.0.0/0 for everyone)")


def _validate_scale_to_zero(options: GkeWorkloadConfig, env: Environment, path: str, problems: Problems) -> None:
    """Scale to zero wakes on requests that pass through the in-cluster interceptor, so only in-cluster
    clients can wake it; prod confirms the cold start on purpose."""
    if not options.scale_to_zero:
        if options.scale_to_zero_idle_seconds is not None:
            problems.add(path + ".scaleToZeroIdleSeconds", "is set but scaleToZero is false; remove it or set "
                                                           "scaleToZero: true")
        if options.acknowledge_scale_to_zero_in_prod:
            problems.add(path + ".acknowledgeScaleToZeroInProd", "is set but scaleToZero is false; remove it")
        return
    if env is Environment.PROD and not options.acknowledge_scale_to_zero_in_prod:
        problems.add(path + ".scaleToZero", "is true in a prod stack: after an idle period the first request waits "
                                            "for a node and a model load (many minutes). Set `" + path +
                                            ".acknowledgeScaleToZeroInProd: true` if that is intended, or keep "
                                            "minReplicas of 1 or more")
    if options.public_load_balancer:
        problems.add(path + ".publicLoadBalancer", "is true with scaleToZero: a load balancer has no backend while the "
                                                   "deployment is at zero and cannot wake it (the wake-up path is the "
                                                   "in-cluster interceptor). Remove one of them")
    if options.allowed_cidrs:
        problems.add(path + ".allowedCidrs", "is set with scaleToZero: clients outside the cluster reach the load "
                                             "balancer, which cannot wake a deployment at zero. Call it from the "
                                             "namespaces in allowedNamespaces (the wake URL), or turn scaleToZero off")


def _validate_stack(settings: Settings, project: str, region: str, problems: Problems, *,
                    gke_given: bool = False) -> None:
    env = settings.environment
    protections = PROTECTIONS[env]
    ns = NAMESPACE + ":"
    if settings.gke is not None:
        for cidr in settings.gke.master_authorized_networks:
            problem = _cidr_problem(cidr)
            if problem:
                problems.add(ns + "gke.masterAuthorizedNetworks", problem)
    _validate_anywhere_cache_zones(settings.bucket, region, ns + "bucket.anywhereCacheZones", problems)
    if settings.bucket.force_destroy and not protections.allow_force_destroy:
        problems.add(ns + "bucket.forceDestroy",
                     f"is true in a {env.value} stack; only dev may delete a bucket with objects in it. Set it to false")
    prefix = settings.name_prefix or defaults.NAME_PREFIX.format(environment=env.value)
    if settings.hf_token_secret is not None and secret_reference_problem(settings.hf_token_secret):
        problems.add(ns + "hfTokenSecret", str(secret_reference_problem(settings.hf_token_secret)))
    _validate_labels(settings.labels, ns + "labels", problems)
    if settings.bucket.name is None and project:
        derived = default_bucket_name(project, prefix)
        if bucket_name_problem(derived):
            problems.add(ns + "bucket.name", f"is unset and the default name {derived!r} is not a valid bucket name "
                                             f"({bucket_name_problem(derived)}); set {ns}bucket.name")
    if settings.gke is not None:
        _validate_gke(settings, settings.gke, problems)
    has_gke = any(d.platform is Platform.GKE for d in settings.deployments.values())
    for name, deployment in settings.deployments.items():
        path = f"{ns}deployments.{name}"
        if deployment.platform in (Platform.CLOUDRUN, Platform.GKE):
            accounts = [runtime_account_id(prefix, name)] if deployment.platform is Platform.CLOUDRUN else []
            if deployment.platform is Platform.CLOUDRUN and deployment.cloudrun_options.weights is WeightsSource.IMAGE:
                accounts.append(build_account_id(prefix, name))
            if copies_weights(deployment):
                accounts.append(copy_account_id(prefix, name))
            for account in accounts:
                problem = service_account_id_problem(account)
                if problem:
                    problems.add(path, f"the service account id derived from namePrefix {prefix!r} and the name "
                                       f"{name!r} is invalid: {problem}. Change the deployment name or {ns}namePrefix")
        if deployment.platform is Platform.CLOUDRUN:
            _validate_cloudrun_hardware(deployment, path, region, problems)
        if deployment.platform is Platform.GKE:
            _validate_gke_access(deployment.gke_options, env, f"{path}.gke", problems)
        if deployment.platform is Platform.GKE and (settings.gke is not None or not gke_given):
            _validate_gke_deployment(settings, deployment, path, problems)  # (a bad gke section is reported itself)
        if deployment.labels and deployment.platform is Platform.VERTEX:
            problems.add(f"{path}.labels", "Vertex AI Model Garden deployments take no user labels (the deploy API has "
                                           "no labels field), so these would be dropped; remove them (stack labels "
                                           "still go on the bucket, secret and registry)")
        else:
            _validate_labels(deployment.labels, f"{path}.labels", problems,
                             kubernetes=deployment.platform is Platform.GKE)
        for member in deployment.cloudrun_options.invokers:
            if is_public_member(member) and not settings.access.allow_public_invokers:
                problems.add(f"{path}.cloudrun.invokers",
                             f"contains {member!r}, which makes the service public; remove it, or set "
                             f"`{ns}access.allowPublicInvokers: true` if the stack really must be public")
            elif member_problem(member):
                problems.add(f"{path}.cloudrun.invokers", str(member_problem(member)))
    if has_gke:
        # Stack labels also label the Kubernetes objects of every GKE deployment.
        for key, value in settings.labels.items():
            if not gcp_label_problem(key, value) and k8s_label_problem(key, value):
                problems.add(f"{ns}labels.{key}", f"{k8s_label_problem(key, value)}; GKE deployments carry the stack "
                                                  "labels on their Kubernetes objects")


def _validate_cloudrun_hardware(d: DeploymentConfig, path: str, region: str, problems: Problems) -> None:
    h = d.hardware
    gpu = h.accelerator_type or hardware_defaults()["cloudrun"]["gpu"]
    accelerator = CATALOG.accelerator_by_cloudrun_gpu(gpu)
    if accelerator is None:
        return  # resolve names the GPU types Cloud Run offers
    lo_cpu, hi_cpu = accelerator.cloudrun_min_cpu or 1, accelerator.cloudrun_max_cpu
    if h.cpu is not None and not (lo_cpu <= int(h.cpu) <= (hi_cpu or int(h.cpu))):
        allowed = f"{lo_cpu} to {hi_cpu}" if hi_cpu else f"at least {lo_cpu}"
        problems.add(f"{path}.hardware.cpu", f"got {h.cpu!r}; Cloud Run with {gpu} takes {allowed} whole vCPUs "
                                             "per instance")
    lo_mem, hi_mem = accelerator.cloudrun_min_memory_gib or 1, accelerator.cloudrun_max_memory_gib
    if h.memory is not None and not (lo_mem <= memory_gib(h.memory) <= (hi_mem or memory_gib(h.memory))):
        allowed = f"{lo_mem}Gi to {hi_mem}Gi" if hi_mem else f"at least {lo_mem}Gi"
        problems.add(f"{path}.hardware.memory", f"got {h.memory!r}; Cloud Run with {gpu} takes {allowed} per instance")
    known = locations().regions.get(region)
    if known is not None and gpu not in known.cloudrun_gpus:
        offering = ", ".join(locations().cloudrun_regions(gpu)) or "(none recorded)"
        where = f"{path}.hardware.acceleratorType" if h.accelerator_type else REGION_KEY
        problems.add(where, f"Cloud Run offers no {gpu} GPU in {region} (deployment {d.model}); regions with it: "
                            f"{offering}. Change gcp:region or the GPU type")


def _validate_gke(settings: Settings, gke: GkeClusterConfig, problems: Problems) -> None:
    ns = NAMESPACE + ":"
    cluster = cluster_name(settings)
    node_account = node_account_id(cluster)
    if service_account_id_problem(node_account):
        where = f"{ns}gke.name" if gke.name else f"{ns}namePrefix"
        problems.add(where, f"the node service account id {node_account!r} (cluster name + `-nodes`) is invalid: "
                            f"{service_account_id_problem(node_account)}; shorten the cluster name")
    loc = locations()
    location_region = loc.regions.get(gke.location) or loc.zone(gke.location)
    if location_region is None:
        problems.add(f"{ns}gke.location", f"got {gke.location!r}, not a known zone or region"
                                          f"{did_you_mean(gke.location, list(loc.regions) + loc.all_zones())}; "
                                          "give a zone such as us-east5-b or a region such as us-central1")
        return
    if gke.autopilot and gke.node_pools:
        problems.add(f"{ns}gke.nodePools", "Autopilot clusters have no node pools of their own; remove nodePools and "
                                           "give each GKE deployment hardware.machineType (and hardware.tpuTopology), "
                                           "or set autopilot: false")
    if gke.min_master_version is not None:
        tpu_v6e = any(_machine_accelerator(p.machine_type) == "tpu-v6e" for p in gke.node_pools.values()) or any(
            _machine_accelerator(d.hardware.machine_type or "") == "tpu-v6e"
            for d in settings.deployments.values() if d.platform is Platform.GKE and gke.autopilot)
        problem = gke_floor_problem(gke.min_master_version, TPU_V6E_MIN_GKE_VERSION if tpu_v6e else "1.0", "TPU v6e")
        if problem:
            problems.add(f"{ns}gke.minMasterVersion", problem)
    for pool_name, pool in gke.node_pools.items():
        pool_path = f"{ns}gke.nodePools.{pool_name}"
        for index, zone in enumerate(pool.node_locations):
            if loc.zone(zone) is None or loc.zone(zone) is not location_region:
                zones = ", ".join(location_region.zones)
                problems.add(f"{pool_path}.nodeLocations[{index}]",
                             f"got {zone!r}; node locations are zones of the cluster's region "
                             f"{location_region.name}: {zones}{did_you_mean(zone, list(location_region.zones))}")
        _validate_tpu_zones(_machine_accelerator(pool.machine_type), gke, pool.node_locations,
                            f"{pool_path}.nodeLocations", problems)
        _validate_capacity(pool, gke, pool_path, problems)


def _validate_capacity(pool: NodePoolConfig, gke: GkeClusterConfig, pool_path: str, problems: Problems) -> None:
    """Each capacity a pool may use (its own and its fallbacks) must exist in its zones at the cluster's version."""
    accelerator = _machine_accelerator(pool.machine_type)
    if accelerator is None:
        return
    table = capacity_table()
    loc = locations()
    if pool.node_locations:
        zones: tuple[str, ...] = pool.node_locations
    elif gke.location in loc.regions:
        zones = tuple(loc.tpu_zones_in(accelerator, gke.location)) or loc.regions[gke.location].zones
    else:
        zones = (gke.location,)
    wanted: list[tuple[str, CapacityType]] = []
    if pool.own_capacity is not CapacityType.ON_DEMAND:  # on-demand zones: _validate_tpu_zones
        wanted.append((f"{pool_path}.{'reservation' if pool.reservation else 'spot'}", pool.own_capacity))
    wanted += [(f"{pool_path}.fallbacks[{index}]", capacity) for index, capacity in enumerate(pool.fallbacks)]
    floors: list[tuple[str, str, str]] = []
    if pool.fallbacks:
        floors.append((f"{pool_path}.fallbacks", table.compute_class_min_gke, "ComputeClass"))
        floors.append((f"{pool_path}.fallbacks", table.auto_creation_min_gke,
                       "node pool auto-creation from a ComputeClass"))
    for where, capacity in wanted:
        offer = table.offer(accelerator, capacity.value)
        if offer is None:
            if capacity is not CapacityType.ON_DEMAND:
                problems.add(where, f"{capacity.value} capacity for {accelerator} is not in the catalog "
                                    "(stacks/catalog/data/capacity.yaml); add it with its source or remove it")
            continue
        if offer.zones is not None:
            missing = [z for z in zones if z not in offer.zones]
            if missing:
                problems.add(where, f"{capacity.value} {accelerator} capacity does not exist in {', '.join(missing)}; "
                                    f"zones that offer it: {', '.join(offer.zones)}. Remove it, or move the pool "
                                    "(gke.location or nodeLocations) to one of those zones")
        if offer.min_gke is not None:
            floors.append((where, offer.min_gke, f"{capacity.value} {accelerator} capacity"))
    if gke.min_master_version is not None:
        for where, needed, why in floors:
            problem = gke_floor_problem(gke.min_master_version, needed, why)
            if problem:
                problems.add(f"{NAMESPACE}:gke.minMasterVersion", f"{problem} (needed by {where})")


def _validate_tpu_zones(accelerator: Optional[str], gke: GkeClusterConfig, node_locations: tuple[str, ...],
                        node_locations_path: str, problems: Problems) -> None:
    """A TPU pool or Autopilot TPU workload must sit in zones that offer its TPU generation."""
    acc = CATALOG.accelerators.get(accelerator or "")
    if acc is None or acc.kind != "tpu":
        return
    loc = locations()
    ns = NAMESPACE + ":"
    offering = loc.tpu_zones_in(acc.key)
    listed = ", ".join(offering)
    if node_locations:
        for index, zone in enumerate(node_locations):
            if zone not in offering:
                problems.add(f"{node_locations_path}[{index}]", f"got {zone!r}, a zone without {acc.key}; zones with "
                                                                f"it: {listed}")
    elif gke.location in loc.regions:
        in_region = loc.tpu_zones_in(acc.key, gke.location)
        if not in_region:
            problems.add(f"{ns}gke.location", f"got {gke.location!r}: no zone of this region offers {acc.key}; "
                                              f"zones with it: {listed}")
        elif node_locations_path and set(in_region) != set(loc.regions[gke.location].zones):
            # A regional cluster's pool spans every zone of the region unless told otherwise.
            problems.add(node_locations_path, f"is unset, so the pool would span every zone of {gke.location}, and "
                                              f"only {', '.join(in_region)} offer {acc.key}; set nodeLocations to "
                                              f"[{', '.join(in_region)}] or use that zone as gke.location")
    elif gke.location not in offering:
        problems.add(f"{ns}gke.location", f"got {gke.location!r}, a zone without {acc.key}; zones with it: {listed}")


def _machine_accelerator(machine_type: str) -> Optional[str]:
    machine = CATALOG.machine_type(machine_type)
    return machine.accelerator if machine else None


def _validate_gke_deployment(settings: Settings, d: DeploymentConfig, path: str, problems: Problems) -> None:
    ns = NAMESPACE + ":"
    gke = settings.gke
    if gke is None:
        problems.add(path + ".platform", f"is gke but the stack has no `{ns}gke` cluster section; add one with a "
                                         "location and a node pool (or autopilot: true)")
        return
    h = d.hardware
    pools = list(gke.node_pools)
    if gke.autopilot:
        if h.node_pool is not None:
            problems.add(path + ".hardware.nodePool", f"got {h.node_pool!r}, but an Autopilot cluster has no node "
                                                      "pools; remove it and set hardware.machineType")
        if h.machine_type is None:
            tpu_machines = sorted(m for m, spec in CATALOG.machine_types.items()
                                  if CATALOG.accelerators[spec.accelerator].kind == "tpu")
            problems.add(path + ".hardware.machineType",
                         "is required on an Autopilot cluster: it says which accelerator Autopilot provisions, e.g. "
                         f"ct6e-standard-8t (TPU v6e 2x4); TPU machine types: {', '.join(tpu_machines)}")
        elif CATALOG.machine_type(h.machine_type) is None:
            problems.add(path + ".hardware.machineType",
                         f"got {h.machine_type!r}, not a known accelerator machine type"
                         f"{did_you_mean(h.machine_type, list(CATALOG.machine_types))}")
        else:
            _validate_tpu_zones(_machine_accelerator(h.machine_type), gke, (), "", problems)
        return
    if h.machine_type is not None or h.tpu_topology is not None:
        problems.add(path + ".hardware", "machineType and tpuTopology come from the node pool on a Standard cluster; "
                                         "remove them and choose the pool with hardware.nodePool")
    if h.node_pool is None and len(pools) != 1:
        problems.add(path + ".hardware.nodePool",
                     f"is required when the cluster has {len(pools)} node pools; choose one of: "
                     f"{', '.join(pools) or '(none defined)'}")
    elif h.node_pool is not None and h.node_pool not in gke.node_pools:
        problems.add(path + ".hardware.nodePool",
                     f"got {h.node_pool!r}; defined node pools: {', '.join(pools) or '(none)'}"
                     f"{did_you_mean(h.node_pool, pools)}")


def _validate_anywhere_cache_zones(bucket: BucketConfig, region: str, key: str, problems: Problems) -> None:
    """Anywhere Cache serves a bucket from zones of the bucket's own location: this project's buckets are
    regional, in the stack's region (https://cloud.google.com/storage/docs/anywhere-cache, "Limitations")."""
    known = locations()
    for zone in bucket.anywhere_cache_zones:
        zone_region = zone.rpartition("-")[0]
        if known.zone(zone) is None:
            problems.add(key, f"got {zone!r}, not a known zone{did_you_mean(zone, known.all_zones())}; give zones "
                              f"such as {region or 'us-central1'}-a")
        elif region and zone_region != region:
            in_region = [z for z in known.all_zones() if z.rpartition("-")[0] == region]
            problems.add(key, f"got {zone!r}, in {zone_region}; the bucket is in {region} and Anywhere Cache caches "
                              f"it only in that region's zones: {', '.join(in_region) or '(none known)'}")

