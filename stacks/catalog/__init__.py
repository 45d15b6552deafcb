"""Catalog facts (models, accelerators, machine types, images, vLLM flags and metrics, prices).

The facts live in ``stacks/catalog/data/*.yaml``, each with its source; this module loads them once into
frozen dataclasses (``CATALOG``) and answers the lookups the stacks need. A malformed file raises
``CatalogError`` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

Version = tuple[int, int, int]
DATA_DIR = Path(__file__).resolve().parent / "data"
PLATFORMS = ("vertex", "cloudrun", "gke-gpu", "gke-tpu")
SERVERS = ("openai", "model-garden")

_VERSION_RE = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def parse_version(text: str) -> Version:
    """"0.9.2" -> (0, 9, 2); "v0.32.0" and "0.8.5.post1" (-> (0, 8, 5)) are accepted."""
    match = _VERSION_RE.match(str(text).strip())
    if not match:
        raise ValueError(f"Not a version: {text!r}; expected something like 0.9.2 or v0.32.0.")
    major, minor, patch = (int(part) if part else 0 for part in match.groups())
    return (major, minor, patch)


class CatalogError(ValueError):
    """A catalog file is missing a field or holds a value of the wrong kind."""


# ---------------------------------------------------------------------------
# Records.


@dataclass(frozen=True)
class VisionEncoderSpec:
    """What encoding one image costs, for the memory estimate (see stacks/fit.py)."""

    tokens_per_item: int
    activation_bytes_per_item: int
    profile_scaling: str  # "per_sequence" (V0 encoder-decoder) | "encoder_budget" (V1 encoder cache)


@dataclass(frozen=True)
class ModelSpec:
    hf_id: str
    aliases: tuple[str, ...]
    architecture: str
    params_billion: float
    num_layers: int
    cross_attention_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_context: int
    sliding_window: int | None
    sliding_window_layers: int
    modality: str
    gated: bool
    chat_template: bool
    weight_bytes_per_param: float
    sources: tuple[str, ...]
    vision_encoder: VisionEncoderSpec | None = None
    intermediate_size: int | None = None  # MLP width; None: 3.5 x hidden (Llama's ratio), for the activation estimate

    def kv_bytes_per_layer_token(self, kv_dtype_bytes: float = 2.0, kv_heads: int | None = None) -> float:
        """K and V for one token in one layer: 2 x kv_heads x head_dim x dtype bytes."""
        heads = self.num_kv_heads if kv_heads is None else kv_heads
        return 2 * heads * self.head_dim * kv_dtype_bytes


@dataclass(frozen=True)
class AcceleratorSpec:
    key: str
    kind: str
    memory_bytes: int
    vertex_accelerator: str | None
    gke_accelerator: str
    cloudrun_gpu: str | None
    cloudrun_min_cpu: int | None
    cloudrun_min_memory_gib: int | None
    sources: tuple[str, ...]
    cloudrun_max_cpu: int | None = None  # None: no documented maximum recorded
    cloudrun_max_memory_gib: int | None = None


@dataclass(frozen=True)
class MachineType:
    name: str
    accelerator: str
    accelerator_count: int
    vcpus: int  # sizes GKE pod requests (stacks.resolve.gke_pod_requests)
    memory_gib: float
    sources: tuple[str, ...]


@dataclass(frozen=True)
class TpuTopology:
    name: str
    chips: int
    hosts: int
    machine_type: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class ImageSpec:
    ref: str
    vllm_version: Version
    server: str
    accelerator_kind: str
    architecture: str
    released: str
    default_for: tuple[str, ...]
    sources: tuple[str, ...]
    # Empty when a public source shows the tag exists; otherwise what is unconfirmed and where to check.
    unconfirmed: str = ""


@dataclass(frozen=True)
class FlagSpec:
    flag: str
    since: Version | None
    removed_in: Version | None
    servers: tuple[str, ...]
    sources: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str
    since: Version | None
    hidden_in: Version | None
    removed_in: Version | None
    sources: tuple[str, ...]


@dataclass(frozen=True)
class PlatformMetric:
    """A Google Cloud system metric the dashboard or alerts read (data/platform_metrics.yaml)."""

    role: str
    type: str  # Cloud Monitoring name, e.g. run.googleapis.com/request_count
    kind: str  # gauge | counter | distribution
    resource: str  # monitored resource type
    sources: tuple[str, ...]

    @property
    def promql_name(self) -> str:
        """The documented PromQL spelling: first "/" -> ":", every other "/" and "." -> "_"."""
        domain, _, path = self.type.partition("/")
        return re.sub(r"[^A-Za-z0-9_]", "_", domain) + ":" + re.sub(r"[^A-Za-z0-9_]", "_", path)


@dataclass(frozen=True)
class PriceEntry:
    item: str
    usd_per_hour: float
    region: str
    as_of: str
    note: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class SchedulerDefaults:
    """vLLM's own max_num_seqs / max_num_batched_tokens when a deployment sets none (vllm_defaults.yaml)."""

    v1_default_since: Version
    large_device_gib: float
    large_device_name_excludes: tuple[str, ...]  # devices whose name contains one keep the small defaults
    huge_device_gib: float
    huge_device_since: Version
    v1_max_num_seqs: Mapping[str, int]  # "huge" | "large" | "small" device
    v1_max_num_batched_tokens: Mapping[str, int]
    v0_max_num_seqs: int
    v0_min_num_batched_tokens: int
    tpu_max_num_seqs: int
    tpu_max_num_batched_tokens: int
    cuda_graphs_profiled_since: Version
    hybrid_kv_cache_since: Version  # GPU V1 keeps only the window of sliding-window layers from here on
    # From here on a sliding-window layer reserves two prefill chunks, not one: async scheduling (the
    # default) keeps two batches in flight, and out-of-window blocks are freed only once settled.
    two_batches_in_flight_since: Version
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Fp8KvSupport:
    """Where `--kv-cache-dtype fp8` works, what it costs, and its sources."""

    since: Version
    accelerators: tuple[str, ...]
    notes: Mapping[str, str]
    caveat: str
    measured: str
    sources: tuple[str, ...]


TPU_SUPPORT_STATUSES = ("passing", "failing", "untested")


@dataclass(frozen=True)
class TpuV6eFacts:
    gpu_memory_utilization: float
    gpu_memory_utilization_sources: tuple[str, ...]
    support_matrix: Mapping[str, str]  # Hugging Face id -> one of TPU_SUPPORT_STATUSES
    support_matrix_sources: tuple[str, ...]


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, ModelSpec]
    accelerators: Mapping[str, AcceleratorSpec]
    machine_types: Mapping[str, MachineType]
    tpu_topologies: Mapping[str, TpuTopology]
    images: Mapping[str, ImageSpec]
    flags: Mapping[str, FlagSpec]
    metrics: Mapping[str, MetricSpec]
    metric_roles: Mapping[str, tuple[str, ...]]  # role -> vLLM metric names, preferred first
    platform_metrics: Mapping[str, PlatformMetric]
    prices: Mapping[str, PriceEntry]
    prices_as_of: str
    scheduler: SchedulerDefaults
    fp8_kv_cache: Fp8KvSupport
    tpu_v6e: TpuV6eFacts

    def model(self, hf_id: str) -> ModelSpec | None:
        """Exact id or alias, case-insensitive."""
        wanted = hf_id.strip().lower()
        for spec in self.models.values():
            if wanted == spec.hf_id.lower() or wanted in (a.lower() for a in spec.aliases):
                return spec
        return None

    def machine_type(self, name: str) -> MachineType | None:
        return self.machine_types.get(name)

    def accelerator_by_vertex_name(self, name: str) -> AcceleratorSpec | None:
        return next((a for a in self.accelerators.values() if a.vertex_accelerator == name), None)

    def accelerator_by_cloudrun_gpu(self, name: str) -> AcceleratorSpec | None:
        return next((a for a in self.accelerators.values() if a.cloudrun_gpu == name), None)

    def image(self, ref: str) -> ImageSpec | None:
        if ref in self.images:
            return self.images[ref]
        # `<tag>@sha256:<digest>` is the catalog's tag pinned by digest: same facts, deployed by digest.
        tagged, _, digest = ref.partition("@")
        # Accept a docker.io/ prefix on upstream images.
        spec = self.images.get(tagged) or self.images.get(tagged.removeprefix("docker.io/"))
        if spec is not None and digest:
            return dataclasses.replace(spec, ref=ref)
        return spec

    def default_image(self, platform: str) -> ImageSpec:
        for spec in self.images.values():
            if platform in spec.default_for:
                return spec
        raise KeyError(f"No default image for platform {platform!r}; use one of {', '.join(PLATFORMS)}.")

    def flag_accepted(self, flag: str, version: Version, server: str) -> bool:
        """Whether ``server`` at ``version`` accepts ``flag`` (``--name`` or ``--name=value``)."""
        spec = self.flags.get(flag.split("=", 1)[0])
        if spec is None:
            return True
        if server not in spec.servers:
            return False
        if spec.since is not None and version < spec.since:
            return False
        return spec.removed_in is None or version < spec.removed_in

    def metric_exported(self, name: str, version: Version) -> bool:
        """Whether a default server at ``version`` exports ``name`` (hidden metrics count as not)."""
        spec = self.metrics.get(name)
        if spec is None:
            return False
        if spec.since is not None and version < spec.since:
            return False
        for end in (spec.hidden_in, spec.removed_in):
            if end is not None and version >= end:
                return False
        return True

    def metric_for_role(self, role: str, version: Version) -> str | None:
        """The first name listed for ``role`` that a server at ``version`` exports, or None."""
        return next((name for name in self.metric_roles[role] if self.metric_exported(name, version)), None)

    def price(self, item: str) -> PriceEntry | None:
        return self.prices.get(item)


# ---------------------------------------------------------------------------
# Loading.

class _Reader:
    """Typed access to one YAML mapping that names the file and key path in every error."""

    def __init__(self, data: Any, file: str, path: str = "") -> None:
        if not isinstance(data, dict):
            raise CatalogError(f"{file}: {path or 'top level'} must be a mapping, got {type(data).__name__}.")
        self.data, self.file, self.path = data, file, path

    def _where(self, key: str) -> str:
        return f"{self.file}: {self.path + '.' if self.path else ''}{key}"

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data or self.data[key] is None:
            if default is ...:
                raise CatalogError(f"{self._where(key)} is required.")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CatalogError(f"{self._where(key)} must be {getattr(kind, '__name__', kind)}, got {value!r}.")
        return value

    def strings(self, key: str, default: Iterable[str] = ()) -> tuple[str, ...]:
        values = self.get(key, list, list(default))
        if not all(isinstance(v, str) for v in values):
            raise CatalogError(f"{self._where(key)} must be a list of strings.")
        return tuple(values)

    def version(self, key: str, required: bool = False) -> Version | None:
        # Versions must be strings: an unquoted 0.10 would reach us as the float 0.1.
        raw = self.get(key, str, ... if required else None)
        if raw is None:
            return None
        try:
            return parse_version(raw)
        except ValueError as err:
            raise CatalogError(f"{self._where(key)}: {err}") from err

    def choice(self, key: str, allowed: Iterable[str], default: Any = ...) -> str:
        value = self.get(key, str, default)
        if value not in allowed:
            raise CatalogError(f"{self._where(key)} must be one of {', '.join(allowed)}, got {value!r}.")
        return value

    def child(self, key: str) -> _Reader:
        return _Reader(self.data.get(key), self.file, f"{self.path}.{key}" if self.path else key)


def _load(file: str) -> _Reader:
    path = DATA_DIR / file
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise CatalogError(f"{file}: not valid YAML: {err}") from err
    return _Reader(data, file)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, _dt.date) else str(value)


_MODEL_ARCH_KEYS = {
    "architecture", "params_billion", "num_layers", "cross_attention_layers", "hidden_size",
    "num_attention_heads", "num_kv_heads", "head_dim", "vocab_size", "max_context", "sliding_window",
    "sliding_window_layers", "modality", "gated", "chat_template", "weight_bytes_per_param",
    "vision_encoder", "sources", "models", "intermediate_size",
}
_MODEL_ENTRY_KEYS = {"hf_id", "aliases", "chat_template", "weight_bytes_per_param", "gated", "sources"}


def _load_models() -> dict[str, ModelSpec]:
    root = _load("models.yaml").child("architectures")
    models: dict[str, ModelSpec] = {}
    for arch_key in root.data:
        arch = root.child(arch_key)
        unknown = set(arch.data) - _MODEL_ARCH_KEYS
        if unknown:
            raise CatalogError(f"models.yaml: architectures.{arch_key} has unknown keys {sorted(unknown)}.")
        encoder = None
        if arch.data.get("vision_encoder") is not None:
            enc = arch.child("vision_encoder")
            encoder = VisionEncoderSpec(
                tokens_per_item=enc.get("tokens_per_item", int),
                activation_bytes_per_item=enc.get("activation_bytes_per_item", int),
                profile_scaling=enc.choice("profile_scaling", ("per_sequence", "encoder_budget")),
            )
        entries = arch.get("models", list)
        for index, raw in enumerate(entries):
            entry = _Reader(raw, "models.yaml", f"architectures.{arch_key}.models[{index}]")
            unknown = set(entry.data) - _MODEL_ENTRY_KEYS
            if unknown:
                raise CatalogError(f"{entry.file}: {entry.path} has unknown keys {sorted(unknown)}.")
            spec = ModelSpec(
                hf_id=entry.get("hf_id", str),
                aliases=entry.strings("aliases"),
                architecture=arch.get("architecture", str),
                params_billion=arch.get("params_billion", float),
                num_layers=arch.get("num_layers", int),
                cross_attention_layers=arch.get("cross_attention_layers", int, 0),
                hidden_size=arch.get("hidden_size", int),
                num_attention_heads=arch.get("num_attention_heads", int),
                num_kv_heads=arch.get("num_kv_heads", int),
                head_dim=arch.get("head_dim", int),
                vocab_size=arch.get("vocab_size", int),
                max_context=arch.get("max_context", int),
                sliding_window=arch.get("sliding_window", int, None),
                sliding_window_layers=arch.get("sliding_window_layers", int, 0),
                modality=arch.choice("modality", ("text", "vision"), "text"),
                gated=entry.get("gated", bool, arch.get("gated", bool, True)),
                chat_template=entry.get("chat_template", bool, arch.get("chat_template", bool, False)),
                weight_bytes_per_param=entry.get(
                    "weight_bytes_per_param", float, arch.get("weight_bytes_per_param", float, 2.0)
                ),
                sources=arch.strings("sources") + entry.strings("sources"),
                vision_encoder=encoder,
                intermediate_size=arch.get("intermediate_size", int, None),
            )
            if spec.sliding_window_layers > spec.num_layers:
                raise CatalogError(f"models.yaml: architectures.{arch_key}.sliding_window_layers exceeds num_layers.")
            if not spec.sources:
                raise CatalogError(f"models.yaml: architectures.{arch_key} has no sources.")
            if spec.hf_id in models:
                raise CatalogError(f"models.yaml: {entry.path}.hf_id {spec.hf_id!r} is listed twice.")
            models[spec.hf_id] = spec
    return models


def _load_hardware() -> tuple[dict[str, AcceleratorSpec], dict[str, MachineType], dict[str, TpuTopology]]:
    doc = _load("accelerators.yaml")
    accelerators: dict[str, AcceleratorSpec] = {}
    acc_root = doc.child("accelerators")
    for key in acc_root.data:
        acc = acc_root.child(key)
        accelerators[key] = AcceleratorSpec(
            key=key,
            kind=acc.choice("kind", ("gpu", "tpu")),
            memory_bytes=acc.get("memory_mib", int) * 2**20,
            vertex_accelerator=acc.get("vertex_accelerator", str, None),
            gke_accelerator=acc.get("gke_accelerator", str),
            cloudrun_gpu=acc.get("cloudrun_gpu", str, None),
            cloudrun_min_cpu=acc.get("cloudrun_min_cpu", int, None),
            cloudrun_min_memory_gib=acc.get("cloudrun_min_memory_gib", int, None),
            sources=acc.strings("sources"),
            cloudrun_max_cpu=acc.get("cloudrun_max_cpu", int, None),
            cloudrun_max_memory_gib=acc.get("cloudrun_max_memory_gib", int, None),
        )

    family_sources = doc.child("machine_type_sources").data
    machines: dict[str, MachineType] = {}
    mt_root = doc.child("machine_types")
    for name in mt_root.data:
        mt = mt_root.child(name)
        accelerator = mt.get("accelerator", str)
        if accelerator not in accelerators:
            raise CatalogError(f"accelerators.yaml: machine_types.{name}.accelerator {accelerator!r} is not an accelerator key.")
        prefixes = sorted((p for p in family_sources if name.startswith(p)), key=len, reverse=True)
        if not prefixes:
            raise CatalogError(f"accelerators.yaml: machine_types.{name} matches no machine_type_sources entry.")
        machines[name] = MachineType(
            name=name,
            accelerator=accelerator,
            accelerator_count=mt.get("accelerator_count", int),
            vcpus=mt.get("vcpus", int),
            memory_gib=mt.get("memory_gib", float),
            sources=(str(family_sources[prefixes[0]]),),
        )

    topo_sources = doc.strings("tpu_topology_sources")
    topologies: dict[str, TpuTopology] = {}
    topo_root = doc.child("tpu_topologies")
    for name in topo_root.data:
        topo = topo_root.child(str(name))
        machine = topo.get("machine_type", str)
        if machine not in machines:
            raise CatalogError(f"accelerators.yaml: tpu_topologies.{name}.machine_type {machine!r} is not a machine type.")
        topologies[str(name)] = TpuTopology(
            name=str(name), chips=topo.get("chips", int), hosts=topo.get("hosts", int),
            machine_type=machine, sources=topo_sources,
        )
    return accelerators, machines, topologies


def _load_images() -> dict[str, ImageSpec]:
    doc = _load("images.yaml")
    images: dict[str, ImageSpec] = {}

    def add(spec: ImageSpec, where: str) -> None:
        if spec.ref.endswith(":latest") or ":" not in spec.ref.rsplit("/", 1)[-1]:
            raise CatalogError(f"images.yaml: {where} must pin a tag, got {spec.ref!r}.")
        bad = set(spec.default_for) - set(PLATFORMS)
        if bad:
            raise CatalogError(f"images.yaml: {where}.default_for has unknown platforms {sorted(bad)}.")
        images[spec.ref] = spec

    repo = doc.get("model_garden_repo", str)
    mg_sources = doc.strings("model_garden_sources")
    for index, raw in enumerate(doc.get("model_garden", list)):
        item = _Reader(raw, "images.yaml", f"model_garden[{index}]")
        note = item.get("note", str, "")
        add(ImageSpec(
            ref=f"{repo}:{item.get('tag', str)}",
            vllm_version=item.version("vllm", required=True),  # type: ignore[arg-type]
            server="model-garden",
            accelerator_kind="gpu",
            architecture=item.choice("architecture", ("x86", "arm"), "x86"),
            released=_iso(item.get("released", (str, _dt.date))),
            default_for=item.strings("default_for"),
            sources=mg_sources + ((note,) if note else ()),
            unconfirmed=item.get("unconfirmed", str, ""),
        ), item.path)
    for index, raw in enumerate(doc.get("upstream", list)):
        item = _Reader(raw, "images.yaml", f"upstream[{index}]")
        add(ImageSpec(
            ref=item.get("ref", str),
            vllm_version=item.version("vllm", required=True),  # type: ignore[arg-type]
            server=item.choice("server", SERVERS),
            accelerator_kind=item.choice("accelerator_kind", ("gpu", "tpu")),
            architecture=item.choice("architecture", ("x86", "arm"), "x86"),
            released=_iso(item.get("released", (str, _dt.date))),
            default_for=item.strings("default_for"),
            sources=item.strings("sources"),
            unconfirmed=item.get("unconfirmed", str, ""),
        ), item.path)
    for ref, spec in images.items():
        if spec.default_for and spec.unconfirmed:
            raise CatalogError(f"images.yaml: {ref} is the default for {list(spec.default_for)} but unconfirmed "
                               f"({spec.unconfirmed}); a default image must be confirmed by a public source.")
    for platform in PLATFORMS:
        owners = [ref for ref, spec in images.items() if platform in spec.default_for]
        if len(owners) != 1:
            raise CatalogError(f"images.yaml: platform {platform!r} needs exactly one default image, found {owners}.")
    return images


def _load_flags() -> dict[str, FlagSpec]:
    doc = _load("vllm_flags.yaml")
    default_servers = doc.child("defaults").strings("servers")
    flags: dict[str, FlagSpec] = {}
    root = doc.child("flags")
    for name in root.data:
        flag = root.child(name)
        servers = flag.strings("servers", default_servers)
        if set(servers) - set(SERVERS):
            raise CatalogError(f"vllm_flags.yaml: flags.{name}.servers must be among {', '.join(SERVERS)}.")
        sources = flag.strings("sources")
        if not sources:
            raise CatalogError(f"vllm_flags.yaml: flags.{name}.sources is required.")
        flags[name] = FlagSpec(
            flag=name, since=flag.version("since"), removed_in=flag.version("removed_in"),
            servers=servers, sources=sources, note=flag.get("note", str, ""),
        )
    return flags


def _load_metrics() -> dict[str, MetricSpec]:
    root = _load("vllm_metrics.yaml").child("metrics")
    metrics: dict[str, MetricSpec] = {}
    for name in root.data:
        metric = root.child(name)
        sources = metric.strings("sources")
        if not sources:
            raise CatalogError(f"vllm_metrics.yaml: metrics.{name}.sources is required.")
        metrics[name] = MetricSpec(
            name=name, kind=metric.choice("kind", ("gauge", "counter", "histogram")),
            since=metric.version("since"), hidden_in=metric.version("hidden_in"),
            removed_in=metric.version("removed_in"), sources=sources,
        )
    return metrics


def _load_metric_roles(metrics: Mapping[str, MetricSpec]) -> dict[str, tuple[str, ...]]:
    root = _load("vllm_metrics.yaml").child("roles")
    roles = {role: root.strings(role) for role in root.data}
    for role, names in roles.items():
        unknown = [n for n in names if n not in metrics]
        if not names or unknown:
            raise CatalogError(f"vllm_metrics.yaml: roles.{role} must list metrics defined under metrics:, got {unknown or names}.")
    return roles


def _load_platform_metrics() -> dict[str, PlatformMetric]:
    root = _load("platform_metrics.yaml").child("metrics")
    found: dict[str, PlatformMetric] = {}
    for role in root.data:
        row = root.child(role)
        sources = row.strings("sources")
        if not sources:
            raise CatalogError(f"platform_metrics.yaml: metrics.{role}.sources is required.")
        found[role] = PlatformMetric(role=role, type=row.get("type", str),
                                     kind=row.choice("kind", ("gauge", "counter", "distribution")),
                                     resource=row.get("resource", str), sources=sources)
    return found


def _load_prices() -> tuple[dict[str, PriceEntry], str]:
    doc = _load("prices.yaml")
    as_of = _iso(doc.get("as_of", (str, _dt.date)))
    region = doc.get("region", str)
    default_sources = doc.child("defaults").strings("sources")
    prices: dict[str, PriceEntry] = {}
    root = doc.child("prices")
    for item in root.data:
        row = root.child(item)
        prices[item] = PriceEntry(
            item=item, usd_per_hour=row.get("usd_per_hour", float), region=region, as_of=as_of,
            note=row.get("note", str, ""), sources=row.strings("sources", default_sources),
        )
    return prices, as_of


def _load_vllm_defaults(accelerators: Mapping[str, AcceleratorSpec]) -> tuple[SchedulerDefaults, Fp8KvSupport, TpuV6eFacts]:
    doc = _load("vllm_defaults.yaml")
    sched = doc.child("scheduler")
    v1, v0, tpu = sched.child("v1"), sched.child("v0"), sched.child("tpu")

    def sizes(reader: _Reader, key: str) -> Mapping[str, int]:
        node = reader.child(key)
        return MappingProxyType({size: node.get(size, int) for size in ("huge", "large", "small")})

    scheduler = SchedulerDefaults(
        v1_default_since=sched.version("v1_default_since", required=True),  # type: ignore[arg-type]
        large_device_gib=sched.get("large_device_gib", float),
        large_device_name_excludes=sched.strings("large_device_name_excludes"),
        huge_device_gib=sched.get("huge_device_gib", float),
        huge_device_since=sched.version("huge_device_since", required=True),  # type: ignore[arg-type]
        v1_max_num_seqs=sizes(v1, "max_num_seqs"),
        v1_max_num_batched_tokens=sizes(v1, "max_num_batched_tokens"),
        v0_max_num_seqs=v0.get("max_num_seqs", int),
        v0_min_num_batched_tokens=v0.get("min_num_batched_tokens", int),
        tpu_max_num_seqs=tpu.get("max_num_seqs", int),
        tpu_max_num_batched_tokens=tpu.get("max_num_batched_tokens", int),
        cuda_graphs_profiled_since=sched.version("cuda_graphs_profiled_since", required=True),  # type: ignore[arg-type]
        hybrid_kv_cache_since=sched.version("hybrid_kv_cache_since", required=True),  # type: ignore[arg-type]
        two_batches_in_flight_since=sched.version("two_batches_in_flight_since", required=True),  # type: ignore[arg-type]
        sources=(sched.strings("sources") + sched.strings("cuda_graphs_sources") + sched.strings("hybrid_kv_cache_sources")
                 + sched.strings("two_batches_in_flight_sources")),
    )
    fp8 = doc.child("fp8_kv_cache")
    fp8_accelerators = fp8.strings("accelerators")
    unknown = set(fp8_accelerators) - set(accelerators)
    if unknown:
        raise CatalogError(f"vllm_defaults.yaml: fp8_kv_cache.accelerators names unknown accelerators {sorted(unknown)}.")
    fp8_support = Fp8KvSupport(
        since=fp8.version("since", required=True),  # type: ignore[arg-type]
        accelerators=fp8_accelerators,
        notes=MappingProxyType({str(k): str(v) for k, v in fp8.get("notes", dict, {}).items()}),
        caveat=fp8.get("caveat", str), measured=fp8.get("measured", str), sources=fp8.strings("sources"),
    )
    v6e = doc.child("tpu_v6e")
    matrix = v6e.get("support_matrix", dict)
    bad = {k: v for k, v in matrix.items() if v not in TPU_SUPPORT_STATUSES}
    if bad:
        raise CatalogError(f"vllm_defaults.yaml: tpu_v6e.support_matrix values must be passing, failing or untested, got {bad}.")
    tpu_facts = TpuV6eFacts(
        gpu_memory_utilization=v6e.get("gpu_memory_utilization", float),
        gpu_memory_utilization_sources=v6e.strings("gpu_memory_utilization_sources"),
        support_matrix=MappingProxyType({str(k): str(v) for k, v in matrix.items()}),
        support_matrix_sources=v6e.strings("support_matrix_sources"),
    )
    for name, sources in (("scheduler", scheduler.sources), ("fp8_kv_cache", fp8_support.sources),
                          ("tpu_v6e", tpu_facts.gpu_memory_utilization_sources + tpu_facts.support_matrix_sources)):
        if not sources:
            raise CatalogError(f"vllm_defaults.yaml: {name} has no sources.")
    return scheduler, fp8_support, tpu_facts


def load_catalog() -> Catalog:
    """Read every catalog file; raises CatalogError naming the file and key on bad data."""
    accelerators, machines, topologies = _load_hardware()
    prices, as_of = _load_prices()
    scheduler, fp8_kv_cache, tpu_v6e = _load_vllm_defaults(accelerators)
    metrics = _load_metrics()
    freeze = MappingProxyType
    return Catalog(
        models=freeze(_load_models()),
        accelerators=freeze(accelerators),
        machine_types=freeze(machines),
        tpu_topologies=freeze(topologies),
        images=freeze(_load_images()),
        flags=freeze(_load_flags()),
        metrics=freeze(metrics),
        metric_roles=freeze(_load_metric_roles(metrics)),
        platform_metrics=freeze(_load_platform_metrics()),
        prices=freeze(prices),
        prices_as_of=as_of,
        scheduler=scheduler,
        fp8_kv_cache=fp8_kv_cache,
        tpu_v6e=tpu_v6e,
    )


CATALOG: Catalog = load_catalog()


@functools.cache
def hardware_defaults() -> dict:
    """Hardware per platform when a deployment sets none (data/hardware_defaults.yaml)."""
    with open(DATA_DIR / "hardware_defaults.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)
