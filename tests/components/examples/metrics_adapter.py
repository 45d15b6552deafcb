"""CustomMetricsAdapter: the Stackdriver custom-metrics adapter, so an HPA can read vLLM's
Managed Prometheus metrics."""

import pulumi

from components.gke_cluster import GkeCluster, GkeClusterArgs, NodePoolSpec
from components.metrics_adapter import CustomMetricsAdapter, CustomMetricsAdapterArgs
from tests.components.examples.gke_cluster import V6E


def example() -> pulumi.Output:
    cluster = GkeCluster("gke", GkeClusterArgs(
        project="my-project", location="us-east5-b", cluster_name="llm-dev-gke", hardware=V6E,
        node_pools={"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_max_node_count=2)},
    ))
    adapter = CustomMetricsAdapter("metrics-adapter", CustomMetricsAdapterArgs(
        provider=cluster.provider,
        project="my-project",
        project_number="123456789012",
    ))
    return adapter.principal
