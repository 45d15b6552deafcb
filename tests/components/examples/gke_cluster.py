"""GkeCluster: a Standard cluster with a TPU v6e 2x4 node pool, checked against hardware facts the
program passes in."""

from types import MappingProxyType

import pulumi

from components.gke_cluster import GkeCluster, GkeClusterArgs, HardwareTable, MachineShape, NodePoolSpec, TopologyShape

# The facts a program normally builds from its catalog: one v6e host type and its slice.
V6E = HardwareTable(
    machine_types=MappingProxyType({"ct6e-standard-8t": MachineShape("tpu-v6e", "tpu", 8, "tpu-v6e-slice")}),
    tpu_topologies=MappingProxyType({"2x4": TopologyShape(chips=8, hosts=1, machine_type="ct6e-standard-8t")}),
)


def example() -> pulumi.Output:
    cluster = GkeCluster("gke", GkeClusterArgs(
        project="my-project",
        location="us-east5-b",
        cluster_name="llm-dev-gke",
        hardware=V6E,
        node_pools={"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_max_node_count=2)},
        labels={"environment": "dev"},
    ))
    return cluster.cluster_name
