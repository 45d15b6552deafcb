"""What a cold start costs, decided once per deployment in resolve: the startup probe budget
from the weights' size, and the key of the compile cache a replica may reuse.

Startup budget::

    estimate = (fixed + weight bytes / load rate + cold compile) x safety factor

with the load rate per platform and the compile time per accelerator kind from
``stacks/catalog/data/startup.yaml`` (each with what it rests on), capped at the platform's
limit: Cloud Run's startup window with a GPU (``components.cloudrun.STARTUP_WINDOW_MAX_SECONDS``),
Vertex AI's deployment timeout (``components.vertex.MAX_DEPLOYMENT_TIMEOUT_SECONDS``), and on GKE,
which has none (failureThreshold x periodSeconds may be anything), this project's own ceiling.

Expected replica start (the one estimate the HPA windows in ``stacks/startup.py`` rest on)::

    start = node provisioning (GKE) + fixed + weight bytes / load rate + cold compile

the same figures without the safety factor: the probe budget is a ceiling, this is what a new
replica on a new node is expected to take.

Compile cache key: a hash of everything that changes a compiled graph (the model and its
revision, every server setting, the accelerator, the device count and TPU topology, the image),
so a replica never restores a cache compiled for something else; the cache lives under
``gs://<bucket>/compile-cache/<key>/``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Optional

import yaml

from components.cloudrun import STARTUP_WINDOW_MAX_SECONDS as CLOUD_RUN_STARTUP_MAX
from components.compile_cache import CACHE_PREFIX_ROOT
from components.vertex import MAX_DEPLOYMENT_TIMEOUT_SECONDS as VERTEX_DEPLOYMENT_MAX
from stacks.catalog import DATA_DIR

# GKE sets no limit on a startup probe; past four hours a start is a broken start, not a slow one.
GKE_STARTUP_MAX = 14400
PLATFORM_LIMITS = {
    "cloudrun": (CLOUD_RUN_STARTUP_MAX, "Cloud Run's startup window with a GPU (failureThreshold x periodSeconds)"),
    "vertex": (VERTEX_DEPLOYMENT_MAX, "Vertex AI's deployment timeout (at most 2 hours)"),
    "gke-tpu": (GKE_STARTUP_MAX, "this project's ceiling on GKE, which has no limit of its own"),
    "gke-gpu": (GKE_STARTUP_MAX, "this project's ceiling on GKE, which has no limit of its own"),
}
KEY_LENGTH = 16  # hex digits of sha256: 64 bits, no collision between a stack's configurations


@dataclass(frozen=True)
class StartupFigures:
    """One platform's and one accelerator kind's planning figures, with what they rest on."""

    load_gb_per_s: float
    load_basis: str
    compile_seconds: int
    compile_basis: str
    fixed_seconds: int
    safety_factor: float
    node_seconds: int  # a new node before the container starts (GKE; 0 elsewhere)


@functools.cache
def _startup_data() -> dict[str, Any]:
    return yaml.safe_load((DATA_DIR / "startup.yaml").read_text(encoding="utf-8"))


def startup_figures(platform_key: str, accelerator_kind: str) -> StartupFigures:
    """Figures for ``platform_key`` (cloudrun, vertex, gke-tpu, gke-gpu) and ``tpu`` or ``gpu``."""
    data = _startup_data()
    rate = data["load_rates"][platform_key]
    compile_ = data["compile_seconds"][accelerator_kind]
    return StartupFigures(load_gb_per_s=float(rate["gb_per_s"]), load_basis=" ".join(rate["basis"].split()),
                          compile_seconds=int(compile_["seconds"]), compile_basis=" ".join(compile_["basis"].split()),
                          fixed_seconds=int(data["fixed_seconds"]), safety_factor=float(data["safety_factor"]),
                          node_seconds=int(data["node_provision_seconds"]) if platform_key.startswith("gke-") else 0)


@dataclass(frozen=True)
class StartupBudget:
    """How long a replica may take to answer /health, and how that was decided."""

    platform_key: str
    weight_gb: float
    load_gb_per_s: float
    load_seconds: int
    compile_seconds: int
    fixed_seconds: int
    safety_factor: float
    estimate_seconds: int  # (fixed + load + compile) x safety factor, uncapped
    limit_seconds: int
    limit_name: str
    configured_seconds: Optional[int]  # the stack's setting, when it has one
    setting_key: str  # that setting's key under the deployment, e.g. gke.startupTimeoutSeconds
    seconds: int  # what the probe (or the deployment timeout) gets
    node_seconds: int = 0  # GKE: a new node first; outside the probe's clock

    @property
    def expected_start_seconds(self) -> int:
        """A new replica on a new node, cold compile, no safety factor: what the HPA windows rest on."""
        return self.node_seconds + self.fixed_seconds + self.load_seconds + self.compile_seconds

    @property
    def capped(self) -> bool:
        return self.configured_seconds is None and self.estimate_seconds > self.limit_seconds

    @property
    def source(self) -> str:
        if self.configured_seconds is not None:
            return f"set by {self.setting_key}"
        return f"capped at the limit ({self.limit_name})" if self.capped else "estimate"

    def describe(self) -> str:
        return (f"{self.weight_gb:.1f} GB / {self.load_gb_per_s:g} GB/s = {self.load_seconds} s load + "
                f"{self.compile_seconds} s compile + {self.fixed_seconds} s start, x{self.safety_factor:g} = "
                f"{self.estimate_seconds} s")


def startup_budget(platform_key: str, accelerator_kind: str, weight_bytes: float,
                   configured_seconds: Optional[int], setting_key: str) -> StartupBudget:
    figures = startup_figures(platform_key, accelerator_kind)
    limit, limit_name = PLATFORM_LIMITS[platform_key]
    weight_gb = weight_bytes / 1e9
    load = math.ceil(weight_gb / figures.load_gb_per_s)
    estimate = math.ceil((figures.fixed_seconds + load + figures.compile_seconds) * figures.safety_factor)
    # Whole minutes: probe thresholds and timeouts read better, and the estimate is no finer than that.
    estimate = math.ceil(estimate / 60) * 60
    chosen = configured_seconds if configured_seconds is not None else min(estimate, limit)
    return StartupBudget(platform_key=platform_key, weight_gb=weight_gb, load_gb_per_s=figures.load_gb_per_s,
                         load_seconds=load, compile_seconds=figures.compile_seconds,
                         fixed_seconds=figures.fixed_seconds, safety_factor=figures.safety_factor,
                         estimate_seconds=estimate, limit_seconds=limit, limit_name=limit_name,
                         configured_seconds=configured_seconds, setting_key=setting_key, seconds=chosen,
                         node_seconds=figures.node_seconds)


def compile_cache_key(*, model: str, revision: Optional[str], image: str, accelerator: str, devices: int,
                      tpu_topology: Optional[str], settings: Any) -> str:
    """A short hash of everything a compiled graph depends on (``settings``: the server's flags
    as a dataclass, e.g. ``VllmSettings``). Equal inputs give equal keys on every machine."""
    flags = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) and not isinstance(settings, type) \
        else dict(settings)
    # Where the weights are read from (gs://<this stack's bucket>/...) changes no graph; the model id and
    # revision are keyed above, so stacks that serve the same thing share a key.
    flags.pop("model", None)
    material = json.dumps({"model": model, "revision": revision, "image": image, "accelerator": accelerator,
                           "devices": devices, "tpu_topology": tpu_topology, "flags": flags},
                          sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:KEY_LENGTH]


def compile_cache_prefix(key: str) -> str:
    """The object prefix of one cache in the model bucket."""
    return f"{CACHE_PREFIX_ROOT}/{key}/"
