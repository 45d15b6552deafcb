"""GkeComputeClass: a TPU pool first, then Flex-start and Spot nodes GKE creates when the pool is full."""

import pulumi

from components.compute_class import ComputeClassArgs, GkeComputeClass
from components.gke_cluster import GkeCluster, GkeClusterArgs, NodePoolSpec
from tests.components.examples.gke_cluster import V6E


def example() -> pulumi.Output:
    cluster = GkeCluster("gke", GkeClusterArgs(
        project="my-project", location="us-east5-b", cluster_name="llm-dev-gke", hardware=V6E,
        node_pools={"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_max_node_count=1,
                                        compute_class="tpu")},
    ))
    compute_class = GkeComputeClass("tpu-class", ComputeClassArgs(
        provider=cluster.provider, class_name="tpu", node_pool="tpu",
        accelerator_kind="tpu", gke_accelerator="tpu-v6e-slice", accelerator_count=8,
        machine_type="ct6e-standard-8t", tpu_topology="2x4",
        fallbacks=("flex-start", "spot"),
        node_service_account=cluster.node_service_account_email,
    ))
    # The workload then selects it: VllmGkeWorkloadArgs.accelerator = cluster.placement("tpu").
    return pulumi.Output.from_input(list(compute_class.order))
