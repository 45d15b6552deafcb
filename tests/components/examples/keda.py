"""KedaInstall: KEDA and its HTTP add-on from their pinned charts, the interceptor fenced in by a
NetworkPolicy, and read access to Managed Service for Prometheus for KEDA's operator."""

import pulumi

from components.gke_cluster import GkeCluster, GkeClusterArgs, NodePoolSpec
from components.keda import HttpAddOnValues, InterceptorValues, KedaInstall, KedaInstallArgs
from stacks.catalog.gke import gke_hardware


def example() -> pulumi.Output:
    cluster = GkeCluster("gke", GkeClusterArgs(
        project="my-project", location="us-central1-a", cluster_name="llm-dev-gke", hardware=gke_hardware(),
        node_pools={"l4": NodePoolSpec("g2-standard-8", total_min_node_count=0, total_max_node_count=1)},
    ))
    keda = KedaInstall("keda", KedaInstallArgs(
        provider=cluster.provider,
        project="my-project",
        project_number="123456789012",
        # A request waits up to 25 minutes for a node and the model to load.
        http_add_on_values=HttpAddOnValues(interceptor=InterceptorValues(condition_wait_seconds=1500)),
        proxy_client_namespaces=("apps",),
    ))
    return pulumi.Output.from_input(keda.external_scaler_address)
