"""A GKE cluster for model serving: Standard with accelerator node pools (or Autopilot).

What it creates, all children of one ``llm-serving:gke:GkeCluster``:

- the cluster: release channel (its version by default; an optional floor such as ``1.33``,
  checked against TPU v6e's 1.31.2-gke.1115000), Workload Identity (``<project>.svc.id.goog``), the GCS FUSE CSI
  driver, Managed Service for Prometheus, Dataplane V2 (``ADVANCED_DATAPATH``, which enforces
  NetworkPolicy), the default node pool removed;
- optionally private nodes (no external IPs) with a Cloud Router and Cloud NAT for egress (the
  first replica downloads weights from the Hub), and authorised networks for the control plane;
- a node service account with only what nodes need (logs, metrics, image pulls), granted
  additively;
- node pools keyed by a stable name: a small general-purpose pool for cluster add-ons (accelerator
  nodes are tainted, so kube-dns and the metrics adapter need somewhere to run), TPU v6e slices and
  GPU pools. Machine type, topology and chip count are checked against each other before anything
  is registered; a pool a ComputeClass references carries its label and NoSchedule taint;
- optionally a maintenance policy: a recurring window and exclusions, so upgrades (which restart
  replicas that must reload and recompile) stay out of serving hours;
- a Kubernetes provider built from the cluster's own endpoint and CA with the
  ``gke-gcloud-auth-plugin`` exec user, never the ambient kubeconfig.

Machine-type and topology facts come in ``GkeClusterArgs.hardware`` (a ``HardwareTable``); the
program builds it from its catalog, so this module knows no catalog.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.rules import (
    REGION,
    TPU_V6E_MIN_GKE_VERSION,
    ZONE,
    gcp_labels_problems,
    gke_floor_problem,
    service_account_id_problem,
)

TYPE_TOKEN = "llm-serving:gke:Cluster"
# Earlier type tokens of this component: aliases keep the deployed cluster from being replaced.
PREVIOUS_TYPE_TOKENS = ("llm-serving:gke:GkeCluster",)

TPU_V6E_MIN_VERSION = TPU_V6E_MIN_GKE_VERSION  # components.rules holds the fact and its source
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE")

# What nodes need, and nothing more: write logs and metrics, read metadata, pull images.
NODE_ROLES = (
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
)
IMAGE_READER_ROLE = "roles/artifactregistry.reader"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
EXEC_PLUGIN = "gke-gcloud-auth-plugin"

_POOL_NAME = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")
_CLUSTER_NAME = re.compile(r"[a-z]([a-z0-9-]{0,38}[a-z0-9])?")
_RESERVATION = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# General-purpose families for the add-on pool (no accelerators).
_CPU_FAMILIES = ("e2-", "n1-", "n2-", "n2d-", "n4-", "c2-", "c2d-", "c3-", "c3d-", "c4-", "t2d-", "t2a-")


# ---------------------------------------------------------------------------
# Hardware facts.


@dataclass(frozen=True)
class MachineShape:
    """What one node of a machine type carries."""

    accelerator: str  # catalog key, e.g. "tpu-v6e" or "nvidia-l4"
    kind: str  # "tpu" | "gpu"
    count: int  # chips or GPUs per node
    gke_accelerator: str  # node label value: "tpu-v6e-slice", "nvidia-l4"


@dataclass(frozen=True)
class TopologyShape:
    """A TPU slice topology and the machine type that forms it on one host (or several)."""

    chips: int
    hosts: int
    machine_type: str


@dataclass(frozen=True)
class HardwareTable:
    """Machine types with accelerators, and TPU topologies, keyed by name."""

    machine_types: Mapping[str, MachineShape]
    tpu_topologies: Mapping[str, TopologyShape]

    def multi_host_machine_types(self) -> frozenset[str]:
        return frozenset(t.machine_type for t in self.tpu_topologies.values() if t.hosts > 1)

    def hosts_for(self, machine_type: str, topology: str) -> Optional[int]:
        """Hosts a slice of ``topology`` takes on ``machine_type``; None when they do not agree."""
        shape = self.machine_types.get(machine_type)
        topo = self.tpu_topologies.get(topology)
        if shape is None or topo is None or shape.kind != "tpu":
            return None
        if topo.machine_type == machine_type:
            return topo.hosts
        if machine_type in self.multi_host_machine_types() and topo.chips > shape.count and topo.chips % shape.count == 0:
            return topo.chips // shape.count
        return None

    def topologies_for(self, machine_type: str) -> list[str]:
        return [name for name in self.tpu_topologies if self.hosts_for(machine_type, name) is not None]

    def machine_types_for(self, topology: str) -> list[str]:
        return [m for m, s in self.machine_types.items() if s.kind == "tpu" and self.hosts_for(m, topology) is not None]


# ---------------------------------------------------------------------------
# Args.


@dataclass(frozen=True)
class NodePoolSpec:
    """One node pool. The accelerator family (TPU, GPU or none) follows from the machine type."""

    machine_type: str  # e.g. "ct6e-standard-8t" (TPU v6e), "g2-standard-24" (2x L4), "e2-standard-4"
    tpu_topology: Optional[str] = None  # TPU pools: "2x4" etc.; must agree with the machine type
    accelerator_count: Optional[int] = None  # chips or GPUs per node; checked against the machine type
    total_min_node_count: int = 0  # autoscaling lower bound across all zones
    total_max_node_count: int = 1  # autoscaling upper bound across all zones
    spot: bool = False  # Spot VMs: cheaper, may be preempted
    reservation: Optional[str] = None  # consume this specific reservation (name in the cluster's project)
    disk_size_gb: int = 200  # boot disk per node
    node_locations: tuple[str, ...] = ()  # zones; default: the cluster's zone
    gpu_driver_version: str = "LATEST"  # GPU pools: driver GKE installs ("LATEST" or "DEFAULT")
    # A ComputeClass that references this pool: the pool gets its label and NoSchedule taint
    # (cloud.google.com/compute-class=<name>), so only pods selecting the class land on it.
    compute_class: Optional[str] = None


@dataclass(frozen=True)
class MaintenanceExclusion:
    """A period without upgrades (GKE: NO_UPGRADES at most 30 days; narrower scopes up to 180)."""

    name: str
    start_time: str  # RFC 3339
    end_time: str  # RFC 3339
    scope: str = "NO_UPGRADES"  # NO_UPGRADES | NO_MINOR_UPGRADES | NO_MINOR_OR_NODE_UPGRADES


@dataclass(frozen=True)
class MaintenancePolicy:
    """When GKE may upgrade the control plane and nodes: a recurring window and exclusions.

    Upgrades restart every replica on an upgraded node, and a replica reloads its weights and recompiles;
    keeping them to a window outside serving hours is the only lever GKE gives (auto-upgrade stays on:
    release channels require it).
    """

    window_start: Optional[str] = None  # RFC 3339 start of the first occurrence
    window_end: Optional[str] = None  # RFC 3339 end of the first occurrence
    window_recurrence: Optional[str] = None  # RRULE, e.g. FREQ=WEEKLY;BYDAY=SA,SU
    exclusions: tuple[MaintenanceExclusion, ...] = ()


@dataclass(frozen=True)
class ArtifactRepository:
    """An Artifact Registry repository the nodes pull images from."""

    location: str
    repository_id: str
    project: Optional[str] = None  # default: the cluster's project


DEFAULT_SYSTEM_POOL = NodePoolSpec(machine_type="e2-standard-4", total_min_node_count=1, total_max_node_count=3, disk_size_gb=100)


@dataclass(frozen=True)
class GkeClusterArgs:
    """Inputs of ``GkeCluster``. Plain values; the stack maps its config onto these."""

    project: str  # project id; also names the Workload Identity pool <project>.svc.id.goog
    location: str  # zone (e.g. us-east5-b) or region of the cluster
    cluster_name: str  # GKE cluster name, 1-40 lowercase letters, digits, hyphens
    hardware: HardwareTable  # machine-type and TPU-topology facts the pools are checked against
    enable_autopilot: bool = False  # Autopilot: GKE manages nodes; node_pools must be empty
    release_channel: str = "REGULAR"  # RAPID | REGULAR | STABLE
    # Lowest control-plane version (`1.33`, `1.33.5-gke.1080000`); None = the release channel's default,
    # which is newer than what TPU v6e needs on every channel. An exact old patch fails once GKE stops offering it.
    min_master_version: Optional[str] = None
    deletion_protection: bool = True  # provider-side guard; set False before a deliberate destroy
    network: Optional[str] = None  # VPC network name or self link; default network when None
    subnetwork: Optional[str] = None  # subnetwork name or self link
    node_pools: Mapping[str, NodePoolSpec] = field(default_factory=dict)  # accelerator pools by stable name
    system_node_pool: Optional[NodePoolSpec] = DEFAULT_SYSTEM_POOL  # untainted pool for add-ons (Standard)
    node_service_account_id: Optional[str] = None  # default "<cluster_name>-nodes" (6-30 chars)
    image_repositories: Sequence[ArtifactRepository] = ()  # scope the image reader role; empty = project-wide
    labels: Mapping[str, str] = field(default_factory=dict)  # GCP labels on the cluster and node pools
    private_nodes: bool = False  # nodes without external IPs; egress through Cloud NAT created here
    master_authorized_networks: Sequence[str] = ()  # CIDRs allowed to reach the control plane; empty = any
    master_ipv4_cidr_block: Optional[str] = None  # /28 for a VPC-peered control plane; None = GKE's default
    maintenance: Optional[MaintenancePolicy] = None  # None: GKE maintains whenever it likes


def _pool_problems(key: str, pool: NodePoolSpec, hw: HardwareTable, system: bool = False) -> list[str]:
    where = "system_node_pool" if system else f"node_pools[{key!r}]"
    problems: list[str] = []
    if not system and not _POOL_NAME.fullmatch(key):
        problems.append(f"{where}: the name must be 1-40 lowercase letters, digits or hyphens, starting with a letter")
    shape = hw.machine_types.get(pool.machine_type)
    if shape is None:
        if not pool.machine_type.startswith(_CPU_FAMILIES):
            known = ", ".join(sorted(hw.machine_types))
            problems.append(f"{where}.machine_type: got {pool.machine_type!r}, which is neither a known accelerator "
                            f"machine type ({known}) nor a general-purpose type (e2-, n2-, c3-...)")
        elif pool.tpu_topology or pool.accelerator_count:
            problems.append(f"{where}: machine type {pool.machine_type!r} carries no accelerator; remove "
                            f"tpu_topology/accelerator_count or choose an accelerator machine type")
    elif system:
        problems.append(f"system_node_pool.machine_type: got {pool.machine_type!r}, an accelerator machine type; "
                        f"the add-on pool should be general purpose, e.g. e2-standard-4")
    else:
        if pool.accelerator_count is not None and pool.accelerator_count != shape.count:
            unit = "chips" if shape.kind == "tpu" else f"{shape.accelerator} GPUs"
            problems.append(f"{where}.accelerator_count: got {pool.accelerator_count}, but {pool.machine_type} carries "
                            f"{shape.count} {unit} per node; set {shape.count} or leave it unset")
        if shape.kind == "tpu":
            problems += _tpu_problems(where, pool, shape, hw)
        elif pool.tpu_topology is not None:
            problems.append(f"{where}.tpu_topology: got {pool.tpu_topology!r} on GPU machine type "
                            f"{pool.machine_type}; topologies apply to TPU machine types only, remove it")
    if pool.total_min_node_count < 0:
        problems.append(f"{where}.total_min_node_count: got {pool.total_min_node_count}; use 0 or more")
    if pool.total_max_node_count < 1:
        problems.append(f"{where}.total_max_node_count: got {pool.total_max_node_count}; use 1 or more")
    if pool.total_min_node_count > pool.total_max_node_count:
        problems.append(f"{where}.total_min_node_count: got {pool.total_min_node_count}, above total_max_node_count "
                        f"{pool.total_max_node_count}; lower it or raise total_max_node_count")
    if pool.reservation is not None:
        if not _RESERVATION.fullmatch(pool.reservation):
            problems.append(f"{where}.reservation: got {pool.reservation!r}; give the reservation's name "
                            f"(lowercase letters, digits, hyphens)")
        if pool.spot:
            problems.append(f"{where}: spot=True with reservation {pool.reservation!r}; Spot VMs do not consume "
                            f"specific reservations, choose one of them")
    if pool.disk_size_gb < 10:
        problems.append(f"{where}.disk_size_gb: got {pool.disk_size_gb}; GKE needs at least 10 GB")
    if pool.gpu_driver_version not in ("LATEST", "DEFAULT"):
        problems.append(f"{where}.gpu_driver_version: got {pool.gpu_driver_version!r}; use LATEST or DEFAULT")
    return problems


def _tpu_problems(where: str, pool: NodePoolSpec, shape: MachineShape, hw: HardwareTable) -> list[str]:
    agree = hw.topologies_for(pool.machine_type)
    if pool.tpu_topology is None:
        return [f"{where}.tpu_topology: required for TPU machine type {pool.machine_type}; "
                f"it forms {', '.join(agree) or '(no known topology)'}"]
    topo = hw.tpu_topologies.get(pool.tpu_topology)
    if topo is None:
        return [f"{where}.tpu_topology: got {pool.tpu_topology!r}, not a known {shape.accelerator} topology; "
                f"{pool.machine_type} forms {', '.join(agree) or '(none)'}"]
    hosts = hw.hosts_for(pool.machine_type, pool.tpu_topology)
    if hosts is None:
        machines = hw.machine_types_for(pool.tpu_topology)
        single = "single host only" if pool.machine_type not in hw.multi_host_machine_types() else "multi-host capable"
        return [f"{where}: machine type {pool.machine_type} ({shape.count} chips per host, {single}) and topology "
                f"{pool.tpu_topology} ({topo.chips} chips) do not agree; {pool.machine_type} forms "
                f"{', '.join(agree) or '(none)'}, and {pool.tpu_topology} needs {' or '.join(machines) or '(none)'}"]
    problems = []
    if hosts > 1:
        # A multi-host slice is atomic: the pool holds exactly one slice, all hosts or none.
        if pool.total_max_node_count != hosts or pool.total_min_node_count not in (0, hosts):
            problems.append(f"{where}: topology {pool.tpu_topology} on {pool.machine_type} is a {hosts}-host slice that "
                            f"scales atomically; set total_max_node_count={hosts} and total_min_node_count to 0 or {hosts} "
                            f"(got {pool.total_min_node_count}-{pool.total_max_node_count})")
    return problems


def validate_args(args: GkeClusterArgs, hw: HardwareTable) -> list[str]:
    problems: list[str] = []
    if not _CLUSTER_NAME.fullmatch(args.cluster_name):
        problems.append(f"cluster_name: got {args.cluster_name!r}; use 1-40 lowercase letters, digits or hyphens, "
                        f"starting with a letter")
    if not args.project:
        problems.append("project: is required (the project id)")
    if not (REGION.fullmatch(args.location or "") or ZONE.fullmatch(args.location or "")):
        problems.append(f"location: got {args.location!r}; give a zone like us-east5-b or a region like us-central1")
    if args.release_channel not in RELEASE_CHANNELS:
        problems.append(f"release_channel: got {args.release_channel!r}; use one of {', '.join(RELEASE_CHANNELS)}")
    for cidr in args.master_authorized_networks:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            problems.append(f"master_authorized_networks: got {cidr!r}; use a network in CIDR notation such as 203.0.113.0/24")
    if args.master_ipv4_cidr_block is not None:
        try:
            block = ipaddress.ip_network(args.master_ipv4_cidr_block, strict=True)
        except ValueError:
            block = None
        if block is None or block.prefixlen != 28 or block.version != 4:
            problems.append(f"master_ipv4_cidr_block: got {args.master_ipv4_cidr_block!r}; give an IPv4 /28 such as 172.16.0.0/28")
        elif not args.private_nodes:
            problems.append("master_ipv4_cidr_block: only applies with private_nodes=True")

    uses_v6e = args.enable_autopilot or any(
        (hw.machine_types.get(p.machine_type) or MachineShape("", "", 0, "")).accelerator == "tpu-v6e"
        for p in args.node_pools.values())
    if args.min_master_version is not None:
        problem = gke_floor_problem(args.min_master_version, TPU_V6E_MIN_VERSION if uses_v6e else "1.0", "TPU v6e")
        if problem:
            problems.append(f"min_master_version: {problem}")

    sa_id = args.node_service_account_id or f"{args.cluster_name}-nodes"
    sa_problem = service_account_id_problem(sa_id)
    if sa_problem:
        problems.append(f"node_service_account_id: {sa_problem}; set node_service_account_id or shorten cluster_name")

    if args.enable_autopilot:
        if args.node_pools:
            problems.append(f"node_pools: Autopilot clusters have no node pools of their own (got "
                            f"{', '.join(args.node_pools)}); remove them and select TPUs/GPUs with nodeSelectors, "
                            f"or set enable_autopilot=False")
    else:
        for key, pool in args.node_pools.items():
            problems += _pool_problems(key, pool, hw)
        if args.system_node_pool is not None:
            if "system" in args.node_pools:
                problems.append("node_pools['system']: the name is taken by system_node_pool; rename the pool")
            problems += _pool_problems("system", args.system_node_pool, hw, system=True)
        elif not any(p.machine_type not in hw.machine_types for p in args.node_pools.values()):
            problems.append("system_node_pool: is None and no node pool is general purpose; accelerator nodes are "
                            "tainted, so kube-dns and the metrics adapter would stay Pending. Keep the default "
                            "system_node_pool or add a pool with e.g. e2-standard-4")
    problems += [f"labels: {problem}" for problem in gcp_labels_problems(args.labels)]
    return problems


def maintenance_policy(policy: MaintenancePolicy) -> gcp.container.ClusterMaintenancePolicyArgs:
    """The cluster's ``maintenance_policy`` input for ``policy``."""
    window = None
    if policy.window_start and policy.window_end and policy.window_recurrence:
        window = gcp.container.ClusterMaintenancePolicyRecurringWindowArgs(
            start_time=policy.window_start, end_time=policy.window_end, recurrence=policy.window_recurrence)
    exclusions = [gcp.container.ClusterMaintenancePolicyMaintenanceExclusionArgs(
        exclusion_name=e.name, start_time=e.start_time, end_time=e.end_time,
        exclusion_options=gcp.container.ClusterMaintenancePolicyMaintenanceExclusionExclusionOptionsArgs(scope=e.scope),
    ) for e in policy.exclusions]
    return gcp.container.ClusterMaintenancePolicyArgs(recurring_window=window, maintenance_exclusions=exclusions or None)


def cluster_region(location: str) -> str:
    """`europe-west4-a` -> `europe-west4`; a region stays as it is."""
    return location.rsplit("-", 1)[0] if re.fullmatch(r"[a-z]+-[a-z]+\d+-[a-z]", location) else location


# ---------------------------------------------------------------------------
# Kubeconfig.


def render_kubeconfig(context_name: str, endpoint: str, ca_certificate: str) -> str:
    """A kubeconfig for one cluster that authenticates with the gke-gcloud-auth-plugin exec user.

    Names are fixed per cluster so the Kubernetes provider never sees a different active cluster
    (which would plan a replacement of every Kubernetes resource).
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context_name,
                      "cluster": {"server": f"https://{endpoint}", "certificate-authority-data": ca_certificate}}],
        "contexts": [{"name": context_name, "context": {"cluster": context_name, "user": context_name}}],
        "current-context": context_name,
        "preferences": {},
        "users": [{"name": context_name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": EXEC_PLUGIN,
            "installHint": "Install gke-gcloud-auth-plugin: gcloud components install gke-gcloud-auth-plugin",
            "provideClusterInfo": True,
            "interactiveMode": "Never",
        }}}],
    }
    return json.dumps(config, indent=2)


# ---------------------------------------------------------------------------
# Component.


@dataclass(frozen=True)
class AcceleratorPlacement:
    """What a workload needs to land on a node pool: selectors, per-node count and capacity."""

    pool: str
    kind: str  # "tpu" | "gpu"
    gke_accelerator: str  # "tpu-v6e-slice", "nvidia-l4"
    count_per_node: int
    tpu_topology: Optional[str]
    hosts: int  # hosts per TPU slice (1 = single host); 1 for GPUs
    max_nodes: int
    # The pool's ComputeClass, when it has capacity fallbacks: the workload selects the class, and
    # nodes beyond max_nodes come from the fallbacks.
    compute_class: Optional[str] = None


class GkeCluster(pulumi.ComponentResource):
    """A GKE cluster with accelerator node pools and a Kubernetes provider for it."""

    cluster_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    node_pools: dict[str, gcp.container.NodePool]
    node_service_account_email: pulumi.Output[str]
    workload_pool: str

    def __init__(self, name: str, args: GkeClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, pulumi.ResourceOptions.merge(
            pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=old) for old in PREVIOUS_TYPE_TOKENS]), opts))
        hw = args.hardware
        problems = validate_args(args, hw)
        if problems:
            raise ValueError(f"GkeCluster {name!r}: " + "; ".join(problems))
        self._args = args
        self._hw = hw
        child = pulumi.ResourceOptions(parent=self)
        labels = dict(args.labels)
        self.workload_pool = f"{args.project}.svc.id.goog"

        # Node identity: a dedicated account with only the node roles, granted additively.
        sa = gcp.serviceaccount.Account(
            f"{name}-nodes",
            project=args.project,
            account_id=args.node_service_account_id or f"{args.cluster_name}-nodes",
            display_name=f"GKE nodes of {args.cluster_name}",
            opts=child,
        )
        member = pulumi.Output.concat("serviceAccount:", sa.email)
        grants: list[pulumi.Resource] = []
        for role in NODE_ROLES:
            slug = role.removeprefix("roles/").replace(".", "-").lower()
            grants.append(gcp.projects.IAMMember(f"{name}-nodes-{slug}", project=args.project, role=role,
                                                 member=member, opts=child))
        if args.image_repositories:
            for repo in args.image_repositories:
                grants.append(gcp.artifactregistry.RepositoryIamMember(
                    f"{name}-nodes-ar-{repo.location}-{repo.repository_id}",
                    project=repo.project or args.project, location=repo.location,
                    repository=repo.repository_id, role=IMAGE_READER_ROLE, member=member, opts=child))
        else:
            grants.append(gcp.projects.IAMMember(f"{name}-nodes-artifactregistry-reader", project=args.project,
                                                 role=IMAGE_READER_ROLE, member=member, opts=child))

        cluster_args: dict = dict(
            name=args.cluster_name,
            project=args.project,
            location=args.location,
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=args.release_channel),
            min_master_version=args.min_master_version,
            deletion_protection=args.deletion_protection,
            resource_labels=labels,
            network=args.network,
            subnetwork=args.subnetwork,
            # Dataplane V2 (Cilium) enforces NetworkPolicy; Autopilot always runs it.
            datapath_provider="ADVANCED_DATAPATH",
            monitoring_config=gcp.container.ClusterMonitoringConfigArgs(
                enable_components=["SYSTEM_COMPONENTS"],
                managed_prometheus=gcp.container.ClusterMonitoringConfigManagedPrometheusArgs(enabled=True),
            ),
        )
        if args.maintenance is not None:
            cluster_args["maintenance_policy"] = maintenance_policy(args.maintenance)
        if args.private_nodes:
            cluster_args["private_cluster_config"] = gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True, enable_private_endpoint=False,
                master_ipv4_cidr_block=args.master_ipv4_cidr_block)
        if args.master_authorized_networks:
            cluster_args["master_authorized_networks_config"] = gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
                cidr_blocks=[gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                    cidr_block=cidr, display_name=f"authorized-{i}")
                    for i, cidr in enumerate(args.master_authorized_networks)])
        nat_deps: list[pulumi.Resource] = []
        if args.private_nodes:
            nat_deps = self._cloud_nat(name, args)
        if args.enable_autopilot:
            # Autopilot turns on Workload Identity and the GCS FUSE driver itself and owns the nodes;
            # the node identity goes into the auto-provisioning defaults.
            cluster_args.update(
                enable_autopilot=True,
                cluster_autoscaling=gcp.container.ClusterClusterAutoscalingArgs(
                    auto_provisioning_defaults=gcp.container.ClusterClusterAutoscalingAutoProvisioningDefaultsArgs(
                        service_account=sa.email, oauth_scopes=[CLOUD_PLATFORM_SCOPE]),
                ),
            )
        else:
            cluster_args.update(
                remove_default_node_pool=True,
                initial_node_count=1,
                # The short-lived default pool runs as the node account too (never the Compute default).
                node_config=gcp.container.ClusterNodeConfigArgs(service_account=sa.email,
                                                                oauth_scopes=[CLOUD_PLATFORM_SCOPE]),
                networking_mode="VPC_NATIVE",
                ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(),
                workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                    workload_pool=self.workload_pool),
                addons_config=gcp.container.ClusterAddonsConfigArgs(
                    gcs_fuse_csi_driver_config=gcp.container.ClusterAddonsConfigGcsFuseCsiDriverConfigArgs(enabled=True),
                ),
            )
        self.cluster = gcp.container.Cluster(
            f"{name}-cluster",
            **cluster_args,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*grants, *nat_deps],
                                        # node_config only shapes the default pool that is removed right away.
                                        ignore_changes=["nodeConfig"] if not args.enable_autopilot else None),
        )

        self.node_pools = {}
        pools: dict[str, NodePoolSpec] = {}
        if not args.enable_autopilot:
            if args.system_node_pool is not None:
                pools["system"] = args.system_node_pool
            pools.update(args.node_pools)
        for key, spec in pools.items():
            self.node_pools[key] = self._node_pool(name, key, spec, sa.email, labels, grants)

        self.cluster_name = self.cluster.name
        self.endpoint = self.cluster.endpoint
        self.node_service_account_email = sa.email
        context = f"gke_{args.project}_{args.location}_{args.cluster_name}"
        self.kubeconfig = pulumi.Output.secret(pulumi.Output.all(self.cluster.endpoint,
                                                                 self.cluster.master_auth.cluster_ca_certificate)
                                               .apply(lambda v: render_kubeconfig(context, v[0], v[1])))
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.cluster, *self.node_pools.values()]),
        )
        self.register_outputs({
            "cluster_name": self.cluster_name,
            "endpoint": self.endpoint,
            "kubeconfig": self.kubeconfig,
            "node_pools": {k: p.name for k, p in self.node_pools.items()},
            "node_service_account_email": self.node_service_account_email,
            "workload_pool": self.workload_pool,
        })

    def _cloud_nat(self, name: str, args: GkeClusterArgs) -> list[pulumi.Resource]:
        """Egress for nodes without external IPs: a Cloud Router and NAT in the cluster's region."""
        region = cluster_region(args.location)
        network = args.network or "default"
        router = gcp.compute.Router(
            f"{name}-router", project=args.project, region=region, network=network,
            name=f"{args.cluster_name}-router", opts=pulumi.ResourceOptions(parent=self))
        nat = gcp.compute.RouterNat(
            f"{name}-nat", project=args.project, region=region, router=router.name,
            name=f"{args.cluster_name}-nat",
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=pulumi.ResourceOptions(parent=self))
        return [router, nat]

    def _node_pool(self, name: str, key: str, spec: NodePoolSpec, sa_email: pulumi.Output[str],
                   labels: dict[str, str], grants: list[pulumi.Resource]) -> gcp.container.NodePool:
        args = self._args
        shape = self._hw.machine_types.get(spec.machine_type)
        guest_accelerators = None
        placement = None
        if shape is not None and shape.kind == "gpu":
            guest_accelerators = [gcp.container.NodePoolNodeConfigGuestAcceleratorArgs(
                type=shape.gke_accelerator,
                count=shape.count,
                gpu_driver_installation_config=gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
                    gpu_driver_version=spec.gpu_driver_version),
            )]
        if shape is not None and shape.kind == "tpu":
            hosts = self._hw.hosts_for(spec.machine_type, spec.tpu_topology or "") or 1
            # Single-host slices (ct6e-standard-8t = 2x4) take no placement policy: GKE derives the
            # topology from the machine type, and a topology on a single-host pool is rejected.
            if hosts > 1:
                placement = gcp.container.NodePoolPlacementPolicyArgs(type="COMPACT", tpu_topology=spec.tpu_topology)
        reservation = None
        if spec.reservation:
            reservation = gcp.container.NodePoolNodeConfigReservationAffinityArgs(
                consume_reservation_type="SPECIFIC_RESERVATION",
                key="compute.googleapis.com/reservation-name",
                values=[spec.reservation],
            )
        node_labels = None
        taints = None
        if spec.compute_class:
            node_labels = {"cloud.google.com/compute-class": spec.compute_class}
            taints = [gcp.container.NodePoolNodeConfigTaintArgs(
                key="cloud.google.com/compute-class", value=spec.compute_class, effect="NO_SCHEDULE")]
        return gcp.container.NodePool(
            f"{name}-{key}",
            name=key,
            project=args.project,
            location=args.location,
            cluster=self.cluster.name,
            node_locations=list(spec.node_locations) or None,
            initial_node_count=spec.total_min_node_count,
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                total_min_node_count=spec.total_min_node_count,
                total_max_node_count=spec.total_max_node_count,
                location_policy="ANY" if (spec.spot or spec.reservation) else "BALANCED",
            ),
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            placement_policy=placement,
            node_config=gcp.container.NodePoolNodeConfigArgs(
                machine_type=spec.machine_type,
                disk_size_gb=spec.disk_size_gb,
                spot=spec.spot,
                service_account=sa_email,
                oauth_scopes=[CLOUD_PLATFORM_SCOPE],
                resource_labels=labels,
                guest_accelerators=guest_accelerators,
                reservation_affinity=reservation,
                labels=node_labels,
                taints=taints,
                workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=grants,
                # The pool's name is fixed: a replacement must delete the old pool first.
                delete_before_replace=True,
                # Only the first creation uses it; changing the autoscaling floor later must not replace the pool.
                ignore_changes=["initialNodeCount"],
            ),
        )

    def placement(self, pool: str) -> AcceleratorPlacement:
        """Selectors and capacity of an accelerator pool, for ``VllmGkeWorkloadArgs.accelerator``."""
        if self._args.enable_autopilot:
            raise ValueError(f"GkeCluster: {self._args.cluster_name} is an Autopilot cluster without node pools; "
                             f"use components.gke_cluster.autopilot_placement(machine_type, tpu_topology, max_nodes, hardware)")
        spec = self._args.node_pools.get(pool)
        if spec is None:
            raise ValueError(f"GkeCluster: node pool {pool!r} is not defined; defined: {', '.join(self._args.node_pools) or '(none)'}")
        shape = self._hw.machine_types.get(spec.machine_type)
        if shape is None:
            raise ValueError(f"GkeCluster: node pool {pool!r} ({spec.machine_type}) carries no accelerator")
        hosts = (self._hw.hosts_for(spec.machine_type, spec.tpu_topology or "") or 1) if shape.kind == "tpu" else 1
        return AcceleratorPlacement(pool=pool, kind=shape.kind, gke_accelerator=shape.gke_accelerator,
                                    count_per_node=shape.count, tpu_topology=spec.tpu_topology, hosts=hosts,
                                    max_nodes=spec.total_max_node_count, compute_class=spec.compute_class)


def autopilot_placement(machine_type: str, tpu_topology: Optional[str], max_nodes: int,
                        hardware: HardwareTable) -> AcceleratorPlacement:
    """Placement on an Autopilot cluster: the same selectors, nodes provisioned by GKE up to ``max_nodes``."""
    hw = hardware
    spec = NodePoolSpec(machine_type, tpu_topology=tpu_topology, total_max_node_count=max_nodes)
    problems = _pool_problems("autopilot", spec, hw)
    shape = hw.machine_types.get(machine_type)
    if shape is None and not problems:
        problems.append(f"machine_type: {machine_type!r} carries no accelerator")
    if problems:
        raise ValueError("autopilot_placement: " + "; ".join(problems))
    assert shape is not None  # a missing shape is a problem above
    hosts = (hw.hosts_for(machine_type, tpu_topology or "") or 1) if shape.kind == "tpu" else 1
    return AcceleratorPlacement(pool="autopilot", kind=shape.kind, gke_accelerator=shape.gke_accelerator,
                                count_per_node=shape.count, tpu_topology=tpu_topology, hosts=hosts, max_nodes=max_nodes)
