"""How long a new GKE replica takes to serve, and the HPA behaviour that follows from it.

The estimate: a node (``NODE_PROVISION_SECONDS``), the weights read from the bucket (bytes over
``WEIGHTS_READ_GIB_PER_SECOND``), then compilation (``COMPILE_SECONDS`` by accelerator kind); the
constants and why they are what they are sit in ``stacks.defaults``.

The windows (Kubernetes HPA ``behavior``; a stabilization window makes the HPA act on the least
(scale-up) or the greatest (scale-down) recommendation of the window):

- scale down after ``start`` seconds of low load, rounded up to a minute and capped at 3600 (the
  API's limit): a removed replica costs a whole start to get back, so it is kept until the quiet has
  lasted as long as that start (renting it for as long as rebuying it costs: the break-even rule);
- remove one replica per ``scale-down window / 2`` (at most 1800 s, the API's limit on a policy's
  period), so a long quiet drains the deployment step by step, never at once;
- scale up after ``SCALE_UP_WINDOW_SHARE`` of ``start`` of sustained pressure (at least
  ``SCALE_UP_WINDOW_FLOOR_SECONDS``, in whole 15 s scrape intervals): a spike that ends before that
  would be over long before the new replica serves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from components.gke_workload import HPA_MAX_PERIOD_SECONDS, HPA_MAX_WINDOW_SECONDS
from stacks import defaults

if TYPE_CHECKING:
    from stacks.resolved import ResolvedDeployment

__all__ = ["HPA_MAX_PERIOD_SECONDS", "HPA_MAX_WINDOW_SECONDS", "HpaWindows", "StartEstimate", "deployment_start",
           "estimate_start", "hpa_windows"]
SCRAPE_SECONDS = 15  # the PodMonitoring interval the workload sets (VllmGkeWorkloadArgs.scrape_interval)


@dataclass(frozen=True)
class StartEstimate:
    node_seconds: int
    weights_seconds: int
    compile_seconds: int

    @property
    def total_seconds(self) -> int:
        return self.node_seconds + self.weights_seconds + self.compile_seconds


@dataclass(frozen=True)
class HpaWindows:
    scale_up_window_seconds: int
    scale_down_window_seconds: int
    scale_down_period_seconds: int


def estimate_start(weights_gib: float, accelerator_kind: str) -> StartEstimate:
    """A replica's start on a new node: node, weights, compilation (seconds, rounded up)."""
    return StartEstimate(
        node_seconds=defaults.NODE_PROVISION_SECONDS,
        weights_seconds=math.ceil(weights_gib / defaults.WEIGHTS_READ_GIB_PER_SECOND),
        compile_seconds=defaults.COMPILE_SECONDS[accelerator_kind],
    )


def deployment_start(d: ResolvedDeployment) -> StartEstimate:
    """``estimate_start`` for a resolved deployment: all its weights (per device x devices)."""
    weights_gib = d.fit.weights_gib_per_device * d.hardware.devices
    return estimate_start(weights_gib, d.hardware.accelerator.kind)


def hpa_windows(start_seconds: int) -> HpaWindows:
    """The HPA's stabilization windows and scale-down pace for a replica that takes ``start_seconds`` to serve."""
    if start_seconds < 0:
        raise ValueError(f"start_seconds: got {start_seconds}; a duration is 0 or more")
    down = min(HPA_MAX_WINDOW_SECONDS, 60 * math.ceil(start_seconds / 60))
    period = min(HPA_MAX_PERIOD_SECONDS, max(60, down // 2))
    up_raw = start_seconds * defaults.SCALE_UP_WINDOW_SHARE
    up = SCRAPE_SECONDS * math.ceil(up_raw / SCRAPE_SECONDS)
    up = min(HPA_MAX_WINDOW_SECONDS, max(defaults.SCALE_UP_WINDOW_FLOOR_SECONDS, up))
    return HpaWindows(scale_up_window_seconds=up, scale_down_window_seconds=down, scale_down_period_seconds=period)
