"""A GKE ComputeClass for one accelerator node pool: the pool first, then capacity fallbacks in order.

One ``llm-serving:gke:ComputeClass`` holds one ``cloud.google.com/v1`` ``ComputeClass`` (a cluster-scoped
custom resource GKE installs; reference: https://cloud.google.com/kubernetes-engine/docs/reference/crds/computeclass).
Its priorities:

1. ``nodepools: [<pool>]``: the node pool the stack created, as configured (on-demand, Spot or its
   reservation), which keeps its minimum nodes warm. The pool carries the label and the NoSchedule
   taint ``cloud.google.com/compute-class=<class>`` that GKE requires of pools a class references
   (``components.gke_cluster`` adds them; ``compute_class_label`` below is the pair).
2. one priority per fallback, in order: the same accelerator shape (``tpu: {type, count, topology}`` or
   ``machineType`` + ``gpu: {type, count}``) from a reservation (``reservations: {affinity: Specific}``),
   on-demand (``spot: false``), Flex-start (``flexStart: {enabled: true}``) or Spot (``spot: true``).
   GKE creates node pools for them itself (``nodePoolAutoCreation``), running as the cluster's node
   service account, never the Compute Engine default one.

``whenUnsatisfiable: DoNotScaleUp``: when no priority can be had, the pod waits rather than landing
on some other machine (a model server on a general-purpose node would never start). Active migration
stays off: moving a replica back to a preferred node means reloading and recompiling it.

The workload selects the class with the node selector ``cloud.google.com/compute-class: <class>``
(``VllmGkeWorkloadArgs.compute_class``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.rules import dns_label_problem

TYPE_TOKEN = "llm-serving:gke:ComputeClass"
API_VERSION = "cloud.google.com/v1"
KIND = "ComputeClass"
CLASS_LABEL = "cloud.google.com/compute-class"  # node label, taint key and pod node selector
CAPACITY_TYPES = ("reservation", "on-demand", "flex-start", "spot")


def compute_class_label(class_name: str) -> tuple[str, str]:
    """The node label (and taint) a node pool needs for a ComputeClass to reference it."""
    return CLASS_LABEL, class_name


@dataclass(frozen=True, kw_only=True)
class ComputeClassArgs:
    """Inputs of ``GkeComputeClass``: the pool, its accelerator shape and the fallbacks, in order."""

    provider: k8s.Provider  # Kubernetes provider of the cluster
    class_name: str  # the ComputeClass name (cluster-scoped), e.g. the pool's name
    node_pool: str  # the pool tried first (labelled and tainted for the class)
    accelerator_kind: str  # "tpu" | "gpu"
    gke_accelerator: str  # "tpu-v6e-slice", "nvidia-l4"
    accelerator_count: int  # TPU chips or GPUs per node
    machine_type: str  # e.g. "ct6e-standard-8t", "g2-standard-24"
    tpu_topology: Optional[str] = None  # TPU: e.g. "2x4"
    fallbacks: tuple[str, ...]  # capacity types in order: reservation, on-demand, flex-start, spot
    reservation: Optional[str] = None  # the specific reservation a `reservation` fallback consumes
    reservation_project: Optional[str] = None  # its project; None: the cluster's
    node_service_account: Optional[pulumi.Input[str]] = None  # service account of auto-created nodes
    labels: Optional[dict[str, str]] = None  # Kubernetes labels on the ComputeClass object


def validate_args(args: ComputeClassArgs) -> list[str]:
    problems: list[str] = []
    if dns_label_problem(args.class_name):
        problems.append(f"class_name: {dns_label_problem(args.class_name)}")
    if args.accelerator_kind not in ("tpu", "gpu"):
        problems.append(f"accelerator_kind: got {args.accelerator_kind!r}; use tpu or gpu")
    if args.accelerator_kind == "tpu" and not args.tpu_topology:
        problems.append("tpu_topology: required for a TPU class (e.g. 2x4)")
    if not args.fallbacks:
        problems.append("fallbacks: give at least one capacity type; a class with the pool alone adds nothing")
    for capacity in args.fallbacks:
        if capacity not in CAPACITY_TYPES:
            problems.append(f"fallbacks: got {capacity!r}; use {', '.join(CAPACITY_TYPES)}")
    if len(set(args.fallbacks)) != len(args.fallbacks):
        problems.append(f"fallbacks: {list(args.fallbacks)} lists a capacity type twice")
    if "reservation" in args.fallbacks and not args.reservation:
        problems.append("reservation: a reservation fallback needs the reservation's name")
    if args.accelerator_count < 1:
        problems.append(f"accelerator_count: got {args.accelerator_count}; at least 1")
    return problems


def _shape(args: ComputeClassArgs) -> dict[str, Any]:
    if args.accelerator_kind == "tpu":
        # The slice shape decides the machine: a 2x4 v6e slice on one host is ct6e-standard-8t.
        return {"tpu": {"type": args.gke_accelerator, "count": args.accelerator_count, "topology": args.tpu_topology}}
    return {"machineType": args.machine_type, "gpu": {"type": args.gke_accelerator, "count": args.accelerator_count}}


def render_priorities(args: ComputeClassArgs) -> list[dict[str, Any]]:
    """The class's priorities: the pool, then each fallback with the pool's accelerator shape."""
    priorities: list[dict[str, Any]] = [{"nodepools": [args.node_pool]}]
    for capacity in args.fallbacks:
        entry = _shape(args)
        if capacity == "reservation":
            specific: dict[str, Any] = {"name": args.reservation}
            if args.reservation_project:
                specific["project"] = args.reservation_project
            entry["reservations"] = {"affinity": "Specific", "specific": [specific]}
        elif capacity == "flex-start":
            entry["flexStart"] = {"enabled": True}
        else:
            entry["spot"] = capacity == "spot"
        priorities.append(entry)
    return priorities


def render_spec(args: ComputeClassArgs) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "priorities": render_priorities(args),
        "nodePoolAutoCreation": {"enabled": True},
        "whenUnsatisfiable": "DoNotScaleUp",
        "activeMigration": {"optimizeRulePriority": False},
    }
    if args.node_service_account is not None:
        spec["nodePoolConfig"] = {"serviceAccount": args.node_service_account}
    return spec


class GkeComputeClass(pulumi.ComponentResource):
    """One ComputeClass: a node pool and its capacity fallbacks."""

    class_name: str
    order: tuple[str, ...]

    def __init__(self, name: str, args: ComputeClassArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        problems = validate_args(args)
        if problems:
            raise ValueError(f"GkeComputeClass {name!r}: " + "; ".join(problems))
        self.class_name = args.class_name
        # What a reader of the plan sees: the pool, then each fallback.
        self.order = (f"pool {args.node_pool}", *args.fallbacks)
        self.resource = k8s.apiextensions.CustomResource(
            f"{name}-computeclass",
            api_version=API_VERSION,
            kind=KIND,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.class_name, labels=args.labels or None),
            spec=render_spec(args),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        self.register_outputs({"class_name": self.class_name, "order": list(self.order)})
