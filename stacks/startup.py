"""The HPA behaviour that follows from how long a new GKE replica takes to serve.

The start time is ``StartupBudget.expected_start_seconds`` (``stacks/coldstart.py``, decided in
resolve: a new node, process start, the weights read from the bucket, a cold compile; figures in
``stacks/catalog/data/startup.yaml``), the same figures the startup probe budget is built from.

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
from typing import TYPE_CHECKING

from components.hpa_behavior import HPA_MAX_PERIOD_SECONDS, HPA_MAX_WINDOW_SECONDS, HpaBehavior
from stacks import defaults

if TYPE_CHECKING:
    from stacks.resolved import ResolvedDeployment

__all__ = ["HPA_MAX_PERIOD_SECONDS", "HPA_MAX_WINDOW_SECONDS", "deployment_start_seconds", "hpa_windows"]
SCRAPE_SECONDS = 15  # the PodMonitoring interval the workload sets (VllmGkeWorkloadArgs.scrape_interval)


def deployment_start_seconds(d: ResolvedDeployment) -> int:
    """A resolved GKE deployment's expected replica start (resolve sets its startup budget)."""
    if d.startup is None:
        raise ValueError(f"{d.name}: no startup estimate; resolve decides one for every GKE deployment")
    return d.startup.expected_start_seconds


def hpa_windows(start_seconds: int) -> HpaBehavior:
    """The HPA's stabilization windows and scale-down pace for a replica that takes ``start_seconds`` to serve
    (for the stack's HPA, or KEDA's when the deployment scales to zero)."""
    if start_seconds < 0:
        raise ValueError(f"start_seconds: got {start_seconds}; a duration is 0 or more")
    down = min(HPA_MAX_WINDOW_SECONDS, 60 * math.ceil(start_seconds / 60))
    period = min(HPA_MAX_PERIOD_SECONDS, max(60, down // 2))
    up_raw = start_seconds * defaults.SCALE_UP_WINDOW_SHARE
    up = SCRAPE_SECONDS * math.ceil(up_raw / SCRAPE_SECONDS)
    up = min(HPA_MAX_WINDOW_SECONDS, max(defaults.SCALE_UP_WINDOW_FLOOR_SECONDS, up))
    return HpaBehavior(scale_up_window_seconds=up, scale_down_window_seconds=down, scale_down_period_seconds=period)
