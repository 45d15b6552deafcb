"""What resolve produces: a deployment with every default decided, ready for checks and compose."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from components.compile_cache import CompileCacheSync
from components.container import ServingContainer
from stacks import defaults
from stacks.catalog import AcceleratorSpec, ImageSpec, ModelSpec
from stacks.coldstart import StartupBudget
from stacks.config import DeploymentConfig, Platform, StackConfig
from stacks.findings import ERROR, Check
from stacks.fit import FitEstimate, FitRequest
from stacks.schema import NAMESPACE
from stacks.vllm import VllmSettings


@dataclass(frozen=True)
class Hardware:
    accelerator: AcceleratorSpec
    devices: int  # accelerators (GPUs or TPU chips) per replica
    machine_type: Optional[str] = None  # Vertex AI and GKE
    node_pool: Optional[str] = None  # GKE
    tpu_topology: Optional[str] = None
    cpu: Optional[str] = None  # Cloud Run
    memory: Optional[str] = None  # Cloud Run

    @property
    def label(self) -> str:
        if self.machine_type:
            return f"{self.machine_type} ({self.devices} x {self.accelerator.key})"
        return f"{self.devices} x {self.accelerator.key}"


@dataclass(frozen=True)
class Scaling:
    min_replicas: int  # already at the platform's floor (Vertex AI keeps at least one replica)
    max_replicas: int
    metric: Optional[str]  # Prometheus name the GKE HPA reads, e.g. vllm:num_requests_waiting
    target: float  # per replica: the HPA's metric target, or Vertex AI's duty-cycle percent
    max_concurrency: Optional[int] = None  # Cloud Run: requests one instance takes at once


@dataclass(frozen=True)
class ResolvedDeployment:
    name: str
    config: DeploymentConfig
    model: ModelSpec
    image: ImageSpec
    hardware: Hardware
    vllm: VllmSettings
    container: ServingContainer  # what the platform runs, passed to its component unchanged
    rejected_flags: tuple[str, ...]  # flags the pinned vLLM would refuse, dropped from the args
    scaling: Scaling
    fit: FitEstimate
    fit_request: Optional[FitRequest] = None  # what the estimate was made for (checks re-estimate variants)
    startup: Optional[StartupBudget] = None  # startup probe budget (Vertex AI: deployment timeout) and its arithmetic
    compile_cache: Optional[CompileCacheSync] = None  # GKE: the keyed compile cache the pod restores and saves

    @property
    def platform(self) -> Platform:
        return self.config.platform

    @property
    def key(self) -> str:
        return f"{NAMESPACE}:deployments.{self.name}"


@dataclass(frozen=True)
class StackNames:
    """Names of the stack's shared resources, decided once."""

    bucket: str
    images_repository: str  # Artifact Registry repository of the images the stack builds
    dockerhub_repository: str  # remote repository proxying Docker Hub
    dockerhub_path: Optional[str]  # <region>-docker.pkg.dev/<project>/<repository>; None without the remote
    cluster: Optional[str]  # the GKE cluster, when the stack has one
    hf_token_secret: str  # Secret Manager secret id when the stack creates the token secret


@dataclass(frozen=True)
class ResolvedStack:
    config: StackConfig
    names: StackNames
    deployments: Mapping[str, ResolvedDeployment]
    checks: tuple[Check, ...]

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.level == ERROR]


@dataclass(frozen=True)
class WakeTimings:
    """What the first request after an idle period waits for, on a GKE deployment with scaleToZero."""

    node_seconds: int  # the cluster autoscaler adds an accelerator node (expected x defaults.NODE_PROVISIONING_BUDGET_FACTOR)
    startup_seconds: int  # the replica downloads, loads and compiles: the startup probe's budget
    idle_seconds: int  # no request for this long sends the deployment back to zero
    response_header_seconds: int  # forwarded request to first response header

    @property
    def wait_seconds(self) -> int:
        """How long a request waits in the interceptor for the first replica: node + start-up."""
        return self.node_seconds + self.startup_seconds


def wake_timings(d: ResolvedDeployment) -> WakeTimings:
    options = d.config.gke_options
    assert d.startup is not None  # resolve decides a startup budget for every deployment
    return WakeTimings(
        node_seconds=d.startup.node_seconds * defaults.NODE_PROVISIONING_BUDGET_FACTOR,
        startup_seconds=d.startup.seconds,
        idle_seconds=options.scale_to_zero_idle_seconds or defaults.SCALE_TO_ZERO_IDLE_SECONDS,
        response_header_seconds=defaults.WAKE_RESPONSE_HEADER_SECONDS,
    )
