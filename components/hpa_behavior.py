"""How fast an autoscaler on a vLLM queue may add and remove replicas: ``autoscaling/v2`` behavior.

One definition for both owners of a GKE deployment's replicas: the HorizontalPodAutoscaler of
``components/gke_workload.py``, and the HPA KEDA creates for a scale-to-zero deployment
(``components/keda_scaling.py``, ScaledObject ``spec.advanced.horizontalPodAutoscalerConfig.behavior``,
keda.sh/docs/2.20/reference/scaledobject-spec). The windows come from the stack (``stacks/startup.py``).

Limits (Kubernetes API reference, HPAScalingRules): ``stabilizationWindowSeconds`` 0-3600,
HPAScalingPolicy ``periodSeconds`` 1-1800.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HPA_MAX_WINDOW_SECONDS = 3600
HPA_MAX_PERIOD_SECONDS = 1800
SCALE_UP_PERIOD_SECONDS = 60  # at most one replica added a minute, once the up-window held


@dataclass(frozen=True)
class HpaBehavior:
    """How long a recommendation must hold before it is acted on, and how fast replicas go."""

    scale_up_window_seconds: int  # the queue must stay high this long before a replica is added
    scale_down_window_seconds: int  # and low this long before one is removed
    scale_down_period_seconds: int  # at most one replica removed per period

    def problems(self) -> list[str]:
        p = []
        for name in ("scale_up_window_seconds", "scale_down_window_seconds"):
            value = getattr(self, name)
            if not 0 <= value <= HPA_MAX_WINDOW_SECONDS:
                p.append(f"hpa_behavior.{name}: got {value}; Kubernetes allows 0-{HPA_MAX_WINDOW_SECONDS}")
        if not 1 <= self.scale_down_period_seconds <= HPA_MAX_PERIOD_SECONDS:
            p.append(f"hpa_behavior.scale_down_period_seconds: got {self.scale_down_period_seconds}; Kubernetes "
                     f"allows 1-{HPA_MAX_PERIOD_SECONDS}")
        return p

    def spec(self) -> dict[str, Any]:
        """The behavior as the API spells it: up once the up-window held, one replica a minute; down after
        the down-window, one replica per period. ``selectPolicy`` takes the most (up) or least (down) change."""
        return {
            "scaleUp": {"stabilizationWindowSeconds": self.scale_up_window_seconds, "selectPolicy": "Max",
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": SCALE_UP_PERIOD_SECONDS}]},
            "scaleDown": {"stabilizationWindowSeconds": self.scale_down_window_seconds, "selectPolicy": "Min",
                          "policies": [{"type": "Pods", "value": 1, "periodSeconds": self.scale_down_period_seconds}]},
        }
