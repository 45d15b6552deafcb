"""What resolve produces: a deployment with every default decided, ready for checks and compose."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from stacks.catalog import AcceleratorSpec, ImageSpec, ModelSpec
from stacks.config import DeploymentConfig, Platform, StackConfig
from stacks.findings import ERROR, WARNING, Check
from stacks.fit import FitEstimate
from stacks.schema import NAMESPACE
from stacks.vllm import ServerCommand, VllmSettings


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
    min_replicas: int
    max_replicas: int
    metric: Optional[str]  # Prometheus name the GKE HPA reads, e.g. vllm:num_requests_waiting
    target: float

    @property
    def hpa_metric_name(self) -> Optional[str]:
        return f"prometheus.googleapis.com|{self.metric}|gauge" if self.metric else None


@dataclass(frozen=True)
class ResolvedDeployment:
    name: str
    config: DeploymentConfig
    model: ModelSpec
    image: ImageSpec
    hardware: Hardware
    vllm: VllmSettings
    server: ServerCommand
    scaling: Scaling
    fit: FitEstimate

    @property
    def platform(self) -> Platform:
        return self.config.platform

    @property
    def key(self) -> str:
        return f"{NAMESPACE}:deployments.{self.name}"


@dataclass(frozen=True)
class ResolvedStack:
    config: StackConfig
    deployments: Mapping[str, ResolvedDeployment]
    checks: tuple[Check, ...]

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if c.level == ERROR]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.level == WARNING]
