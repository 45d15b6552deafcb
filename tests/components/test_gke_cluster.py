"""GkeCluster under the mock engine: the tutorial's TPU v6e cluster, node pools, IAM and the provider."""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pytest

from components.gke_cluster import (
    TYPE_TOKEN,
    ArtifactRepository,
    GkeCluster,
    GkeClusterArgs,
    MaintenanceExclusion,
    MaintenancePolicy,
    NodePoolSpec,
)
from offline.mocks import is_wrapped_secret, unwrap_secrets
from offline.runner import run_under_mocks
from stacks.catalog.gke import gke_hardware

PROJECT = "mock-project"
TUTORIAL_POOL = NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_min_node_count=1, total_max_node_count=2)
LABELS = {"environment": "dev", "team": "ml"}


def tutorial_args(**overrides) -> GkeClusterArgs:
    base: dict[str, Any] = dict(project=PROJECT, location="us-east5-b", cluster_name="llm-dev-gke",
                                hardware=gke_hardware(), release_channel="RAPID",
                deletion_protection=False, node_pools={"tpu": TUTORIAL_POOL}, labels=LABELS)
    base.update(overrides)
    return GkeClusterArgs(**base)


def run_cluster(args: GkeClusterArgs):
    def program():
        cluster = GkeCluster("gke", args)
        pulumi.export("kubeconfig", cluster.kubeconfig)
        pulumi.export("cluster_name", cluster.cluster_name)
        pulumi.export("endpoint", cluster.endpoint)
        pulumi.export("node_sa", cluster.node_service_account_email)
        pulumi.export("pools", sorted(cluster.node_pools))

    return run_under_mocks(program)


def error_of(args: GkeClusterArgs) -> str:
    with pytest.raises(ValueError) as caught:
        run_cluster(args)
    return str(caught.value)


@pytest.fixture(scope="module")
def tutorial():
    return run_cluster(tutorial_args())


def test_tutorial_cluster_settings(tutorial):
    cluster = tutorial.named("gke-cluster").inputs
    expected = {
        "name": "llm-dev-gke",
        "location": "us-east5-b",
        "releaseChannel": {"channel": "RAPID"},
        "workloadIdentityConfig": {"workloadPool": "mock-project.svc.id.goog"},
        "addonsConfig": {"gcsFuseCsiDriverConfig": {"enabled": True}},
        "removeDefaultNodePool": True,
        "initialNodeCount": 1,
        "deletionProtection": False,
        "resourceLabels": LABELS,
    }
    for key, value in expected.items():
        assert cluster.get(key) == value, f"gke-cluster: {key} is {cluster.get(key)!r}, expected {value!r}"
    # No exact patch by default: the release channel's default version (an old patch stops being offered).
    assert cluster.get("minMasterVersion") is None, f"gke-cluster: minMasterVersion {cluster.get('minMasterVersion')!r}"
    assert cluster["monitoringConfig"]["managedPrometheus"] == {"enabled": True}, \
        f"gke-cluster: Managed Prometheus not enabled: {cluster['monitoringConfig']}"


def test_tutorial_tpu_pool(tutorial):
    pool = tutorial.named("gke-tpu").inputs
    assert pool["name"] == "tpu", f"gke-tpu: GKE name {pool['name']!r}, expected the stable key 'tpu'"
    assert pool["nodeConfig"]["machineType"] == "ct6e-standard-8t", f"gke-tpu: {pool['nodeConfig']}"
    assert pool["autoscaling"]["totalMinNodeCount"] == 1 and pool["autoscaling"]["totalMaxNodeCount"] == 2, \
        f"gke-tpu: autoscaling {pool['autoscaling']}, expected the tutorial's 1-2 nodes"
    # Single-host v6e slice: GKE derives the 2x4 topology from the machine type; no placement policy.
    assert "placementPolicy" not in pool, f"gke-tpu: single-host slice got a placement policy {pool.get('placementPolicy')}"
    assert pool["nodeConfig"]["resourceLabels"] == LABELS, f"gke-tpu: labels {pool['nodeConfig'].get('resourceLabels')}"
    assert pool["nodeConfig"]["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}, f"gke-tpu: {pool['nodeConfig']}"
    assert pool["nodeConfig"]["serviceAccount"] == "llm-dev-gke-nodes@mock-project.iam.gserviceaccount.com", \
        f"gke-tpu: nodes run as {pool['nodeConfig'].get('serviceAccount')!r}, not the dedicated account"
    assert "guestAccelerators" not in pool["nodeConfig"], "gke-tpu: TPU pool got guest accelerators"


def test_system_pool_for_add_ons(tutorial):
    pool = tutorial.named("gke-system").inputs
    assert pool["nodeConfig"]["machineType"] == "e2-standard-4", f"gke-system: {pool['nodeConfig']}"
    assert pool["autoscaling"]["totalMinNodeCount"] >= 1, f"gke-system: add-ons need a node: {pool['autoscaling']}"


def test_node_service_account_roles_are_additive(tutorial):
    grants = {r.inputs["role"]: r for r in tutorial.of_type("gcp:projects/iAMMember:IAMMember")}
    expected = {"roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/monitoring.viewer",
                "roles/stackdriver.resourceMetadata.writer", "roles/artifactregistry.reader"}
    assert set(grants) == expected, f"node service account roles: got {sorted(grants)}, expected {sorted(expected)}"
    for grant in grants.values():
        assert grant.inputs["member"] == "serviceAccount:llm-dev-gke-nodes@mock-project.iam.gserviceaccount.com", \
            f"{grant.name}: member {grant.inputs['member']!r}"
    authoritative = [r.name for r in tutorial.registrations if re.search(r"(IAMBinding|IAMPolicy|IamBinding|IamPolicy)$", r.type)]
    assert not authoritative, f"authoritative IAM resources registered: {authoritative}"


def test_repository_scoped_image_reader():
    result = run_cluster(tutorial_args(image_repositories=(ArtifactRepository("us-east5", "images"),)))
    scoped = result.of_type("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
    assert len(scoped) == 1, f"expected one repository-scoped reader grant, got {[r.name for r in scoped]}"
    assert scoped[0].inputs["repository"] == "images" and scoped[0].inputs["role"] == "roles/artifactregistry.reader", \
        f"{scoped[0].name}: {scoped[0].inputs}"
    project_roles = {r.inputs["role"] for r in result.of_type("gcp:projects/iAMMember:IAMMember")}
    assert "roles/artifactregistry.reader" not in project_roles, "image reader granted project-wide as well"


def test_provider_kubeconfig_uses_exec_plugin_and_no_ambient_config(tutorial):
    provider = tutorial.named("gke-k8s")
    assert provider.type == "pulumi:providers:kubernetes", f"gke-k8s: type {provider.type}"
    raw = provider.inputs["kubeconfig"]
    assert is_wrapped_secret(raw), "gke-k8s: kubeconfig is not registered as a secret"
    config = json.loads(unwrap_secrets(raw))
    assert len(config["contexts"]) == 1 and len(config["clusters"]) == 1 and len(config["users"]) == 1, \
        f"gke-k8s: kubeconfig must describe exactly this cluster: {config}"
    assert config["current-context"] == "gke_mock-project_us-east5-b_llm-dev-gke", \
        f"gke-k8s: unstable context name {config['current-context']!r}"
    assert config["clusters"][0]["cluster"]["server"] == "https://203.0.113.10", f"gke-k8s: {config['clusters']}"
    assert config["clusters"][0]["cluster"]["certificate-authority-data"], "gke-k8s: no CA from the cluster"
    user = config["users"][0]["user"]
    assert set(user) == {"exec"}, f"gke-k8s: user carries {sorted(user)}; only the exec plugin is allowed"
    assert user["exec"]["command"] == "gke-gcloud-auth-plugin", f"gke-k8s: exec {user['exec']}"
    assert user["exec"]["provideClusterInfo"] is True, f"gke-k8s: exec {user['exec']}"
    for ambient in ("context", "cluster", "kubeconfigPath", "renderYamlToDirectory"):
        assert ambient not in provider.inputs, f"gke-k8s: provider sets {ambient}; it must use only its own kubeconfig"
    pool_urns = {tutorial.named("gke-tpu").urn, tutorial.named("gke-system").urn}
    assert pool_urns <= set(provider.dependencies), f"gke-k8s: provider does not wait for the node pools: {provider.dependencies}"


def test_outputs(tutorial):
    assert tutorial.outputs["kubeconfig"].secret, "kubeconfig output is not secret"
    assert tutorial.outputs["cluster_name"].value == "llm-dev-gke", tutorial.outputs["cluster_name"]
    assert tutorial.outputs["endpoint"].value == "203.0.113.10", tutorial.outputs["endpoint"]
    assert tutorial.outputs["node_sa"].value == "llm-dev-gke-nodes@mock-project.iam.gserviceaccount.com"
    assert tutorial.outputs["pools"].value == ["system", "tpu"], tutorial.outputs["pools"]


def children_of(result, type_token: str) -> set[str]:
    # The parent type appears in a child's URN type chain (``<parent type>$<child type>``); this
    # also works for components at the stack root, whose children the runner records with parent "".
    return {r.name for r in result.registrations if f"{type_token}$" in r.urn.split("::")[2]}


def test_children_are_parented(tutorial):
    children = children_of(tutorial, TYPE_TOKEN)
    for name in ("gke-cluster", "gke-tpu", "gke-system", "gke-k8s", "gke-nodes", "gke-nodes-logging-logwriter"):
        assert name in children, f"{name} is not a child of the {TYPE_TOKEN} component: {sorted(children)}"


def test_gpu_pool_spot_and_reservation():
    result = run_cluster(tutorial_args(node_pools={
        "l4": NodePoolSpec("g2-standard-24", total_max_node_count=3, spot=True),
        "tpu-reserved": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_max_node_count=1,
                                     reservation="v6e-reservation"),
    }))
    l4 = result.named("gke-l4").inputs["nodeConfig"]
    assert l4["guestAccelerators"] == [{"type": "nvidia-l4", "count": 2,
                                        "gpuDriverInstallationConfig": {"gpuDriverVersion": "LATEST"}}], \
        f"gke-l4: guest accelerators {l4.get('guestAccelerators')}"
    assert l4["spot"] is True, f"gke-l4: spot {l4.get('spot')}"
    reserved = result.named("gke-tpu-reserved").inputs["nodeConfig"]
    assert reserved["reservationAffinity"] == {"consumeReservationType": "SPECIFIC_RESERVATION",
                                               "key": "compute.googleapis.com/reservation-name",
                                               "values": ["v6e-reservation"]}, \
        f"gke-tpu-reserved: {reserved.get('reservationAffinity')}"


def test_multi_host_pool_gets_compact_placement():
    result = run_cluster(tutorial_args(node_pools={
        "slice": NodePoolSpec("ct6e-standard-4t", tpu_topology="4x4", total_min_node_count=0, total_max_node_count=4)}))
    pool = result.named("gke-slice").inputs
    assert pool["placementPolicy"] == {"type": "COMPACT", "tpuTopology": "4x4"}, f"gke-slice: {pool.get('placementPolicy')}"


def test_autopilot():
    result = run_cluster(tutorial_args(enable_autopilot=True, node_pools={}))
    cluster = result.named("gke-cluster").inputs
    assert cluster["enableAutopilot"] is True, f"gke-cluster: {cluster}"
    assert "removeDefaultNodePool" not in cluster, "gke-cluster: Autopilot has no default pool to remove"
    defaults = cluster["clusterAutoscaling"]["autoProvisioningDefaults"]
    assert defaults["serviceAccount"] == "llm-dev-gke-nodes@mock-project.iam.gserviceaccount.com", f"gke-cluster: {defaults}"
    assert not result.of_type("gcp:container/nodePool:NodePool"), "Autopilot cluster registered node pools"


@pytest.mark.parametrize("pools, needles", [
    ({"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="4x4", total_max_node_count=4)},
     ["node_pools['tpu']", "ct6e-standard-8t", "4x4", "forms 2x4", "ct6e-standard-4t"]),
    ({"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x2")},
     ["node_pools['tpu']", "2x2", "forms 2x4", "needs ct6e-standard-4t"]),
    ({"small": NodePoolSpec("ct6e-standard-1t", tpu_topology="2x4")},
     ["node_pools['small']", "ct6e-standard-1t", "forms 1x1", "ct6e-standard-8t"]),
    ({"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", accelerator_count=4)},
     ["node_pools['tpu'].accelerator_count", "got 4", "carries 8 chips"]),
    ({"tpu": NodePoolSpec("ct6e-standard-8t")},
     ["node_pools['tpu'].tpu_topology", "required", "2x4"]),
    ({"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="3x3")},
     ["node_pools['tpu'].tpu_topology", "'3x3'", "forms 2x4"]),
    ({"gpu": NodePoolSpec("g2-standard-24", tpu_topology="2x4")},
     ["node_pools['gpu'].tpu_topology", "GPU machine type"]),
    ({"gpu": NodePoolSpec("g2-standard-24", accelerator_count=4)},
     ["node_pools['gpu'].accelerator_count", "carries 2 nvidia-l4 GPUs"]),
    ({"tpu": NodePoolSpec("ct7-mystery-8t", tpu_topology="2x4")},
     ["node_pools['tpu'].machine_type", "ct7-mystery-8t", "ct6e-standard-8t"]),
    ({"slice": NodePoolSpec("ct6e-standard-4t", tpu_topology="4x4", total_max_node_count=2)},
     ["node_pools['slice']", "4-host slice", "total_max_node_count=4"]),
    ({"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_min_node_count=3, total_max_node_count=2)},
     ["node_pools['tpu'].total_min_node_count", "got 3", "above total_max_node_count 2"]),
    ({"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", spot=True, reservation="r1")},
     ["node_pools['tpu']", "spot", "reservation"]),
])
def test_bad_pools_rejected(pools, needles):
    message = error_of(tutorial_args(node_pools=pools))
    for needle in needles:
        assert needle in message, f"error for {pools} does not mention {needle!r}: {message}"


def test_two_host_2x4_on_4t_is_accepted():
    result = run_cluster(tutorial_args(node_pools={"pair": NodePoolSpec("ct6e-standard-4t", tpu_topology="2x4",
                                                                    total_max_node_count=2)}))
    assert result.named("gke-pair").inputs["placementPolicy"]["tpuTopology"] == "2x4", "gke-pair: no 2x4 placement"


@pytest.mark.parametrize("version, needle", [
    ("1.30.5-gke.1000", "below 1.31.2-gke.1115000"),
    ("1.31.2-gke.1000", "below 1.31.2-gke.1115000"),
    ("v1.32", "give a GKE version such as"),
    ("latest", "give a GKE version such as"),
])
def test_min_master_version_checked(version, needle):
    message = error_of(tutorial_args(min_master_version=version))
    assert "min_master_version" in message and needle in message and version in message, message


@pytest.mark.parametrize("version", ["1.31.2-gke.1115000", "1.31", "1.32.1-gke.100", "1.33"])
def test_min_master_version_accepted(version):
    result = run_cluster(tutorial_args(min_master_version=version))
    assert result.named("gke-cluster").inputs["minMasterVersion"] == version


def test_all_problems_reported_at_once():
    message = error_of(tutorial_args(release_channel="BETA", location="mars",
                                 node_pools={"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="4x4")}))
    for needle in ("release_channel", "BETA", "location", "mars", "node_pools['tpu']"):
        assert needle in message, f"combined error lacks {needle!r}: {message}"


def test_autopilot_rejects_node_pools():
    message = error_of(tutorial_args(enable_autopilot=True))
    assert "node_pools" in message and "Autopilot" in message and "tpu" in message, message


def test_no_untainted_pool_rejected():
    message = error_of(tutorial_args(system_node_pool=None))
    assert "system_node_pool" in message and "kube-dns" in message, message


def test_catalog_facts_agree_with_tutorial():
    hw = gke_hardware()
    assert hw.hosts_for("ct6e-standard-8t", "2x4") == 1
    assert hw.machine_types["ct6e-standard-8t"].count == 8
    assert hw.machine_types["ct6e-standard-8t"].gke_accelerator == "tpu-v6e-slice"
    assert hw.hosts_for("ct6e-standard-4t", "2x2") == 1 and hw.hosts_for("ct6e-standard-4t", "4x4") == 4
    assert hw.hosts_for("ct6e-standard-8t", "4x4") is None and hw.hosts_for("ct6e-standard-1t", "2x2") is None


def test_dataplane_v2_enforces_network_policy(tutorial):
    cluster = tutorial.named("gke-cluster").inputs
    assert cluster["datapathProvider"] == "ADVANCED_DATAPATH", f"gke-cluster: {cluster.get('datapathProvider')}"


def test_public_nodes_by_default_without_nat(tutorial):
    assert "privateClusterConfig" not in tutorial.named("gke-cluster").inputs
    assert not tutorial.of_type("gcp:compute/routerNat:RouterNat"), "a NAT without private nodes"


def test_private_nodes_get_cloud_nat_and_authorized_networks():
    result = run_cluster(tutorial_args(private_nodes=True, master_authorized_networks=("203.0.113.0/24",)))
    cluster = result.named("gke-cluster")
    assert cluster.inputs["privateClusterConfig"] == {"enablePrivateNodes": True, "enablePrivateEndpoint": False}, \
        f"gke-cluster: {cluster.inputs['privateClusterConfig']}"
    assert cluster.inputs["masterAuthorizedNetworksConfig"] == {
        "cidrBlocks": [{"cidrBlock": "203.0.113.0/24", "displayName": "authorized-0"}]}
    router = result.named("gke-router").inputs
    nat = result.named("gke-nat")
    assert router["region"] == "us-east5" and router["network"] == "default", f"gke-router: {router}"
    assert nat.inputs["region"] == "us-east5" and nat.inputs["sourceSubnetworkIpRangesToNat"] == "ALL_SUBNETWORKS_ALL_IP_RANGES"
    # Nodes start only once they can reach the Hub and the registries.
    assert nat.urn in cluster.dependencies, "gke-cluster does not wait for the NAT"


def test_bad_control_plane_networks_are_refused():
    assert "master_authorized_networks: got '203.0.113.1/24'" in error_of(tutorial_args(master_authorized_networks=("203.0.113.1/24",)))
    assert "master_ipv4_cidr_block: got '172.16.0.0/24'" in error_of(
        tutorial_args(private_nodes=True, master_ipv4_cidr_block="172.16.0.0/24"))


def test_maintenance_window_and_exclusions_reach_the_cluster():
    result = run_cluster(tutorial_args(maintenance=MaintenancePolicy(
        window_start="2026-01-03T00:00:00Z", window_end="2026-01-03T08:00:00Z",
        window_recurrence="FREQ=WEEKLY;BYDAY=SA,SU",
        exclusions=(MaintenanceExclusion("launch", "2026-12-01T00:00:00Z", "2026-12-20T00:00:00Z"),))))
    policy = result.named("gke-cluster").inputs["maintenancePolicy"]
    assert policy["recurringWindow"] == {"startTime": "2026-01-03T00:00:00Z", "endTime": "2026-01-03T08:00:00Z",
                                         "recurrence": "FREQ=WEEKLY;BYDAY=SA,SU"}, f"gke-cluster: {policy}"
    assert policy["maintenanceExclusions"] == [{"exclusionName": "launch", "startTime": "2026-12-01T00:00:00Z",
                                                "endTime": "2026-12-20T00:00:00Z",
                                                "exclusionOptions": {"scope": "NO_UPGRADES"}}], f"gke-cluster: {policy}"


def test_no_maintenance_policy_unless_asked(tutorial):
    assert "maintenancePolicy" not in tutorial.named("gke-cluster").inputs, "gke-cluster: a maintenance policy nobody set"


def test_a_compute_class_pool_is_labelled_and_tainted_for_it(tutorial):
    result = run_cluster(tutorial_args(node_pools={"tpu": NodePoolSpec(
        "ct6e-standard-8t", tpu_topology="2x4", total_max_node_count=1, compute_class="tpu")}))
    config = result.named("gke-tpu").inputs["nodeConfig"]
    assert config["labels"] == {"cloud.google.com/compute-class": "tpu"}, f"gke-tpu: labels {config.get('labels')}"
    assert config["taints"] == [{"key": "cloud.google.com/compute-class", "value": "tpu", "effect": "NO_SCHEDULE"}], \
        f"gke-tpu: taints {config.get('taints')}"
    plain = tutorial.named("gke-tpu").inputs["nodeConfig"]
    assert "labels" not in plain and "taints" not in plain, f"gke-tpu without a class: {plain}"
