"""ScaleToZero: a vLLM Deployment at zero replicas when idle, woken by the first request through
the KEDA HTTP add-on's interceptor, and scaled 1 -> N on vLLM's queue."""

import pulumi

from components.gke_cluster import GkeCluster, GkeClusterArgs, NodePoolSpec
from components.keda import KedaInstall, KedaInstallArgs, prometheus_query_url
from components.keda_scaling import PrometheusQueueTrigger, ScaleToZero, ScaleToZeroArgs
from stacks.catalog.gke import gke_hardware


def example() -> pulumi.Output:
    cluster = GkeCluster("gke", GkeClusterArgs(
        project="my-project", location="us-central1-a", cluster_name="llm-dev-gke", hardware=gke_hardware(),
        node_pools={"l4": NodePoolSpec("g2-standard-8", total_min_node_count=0, total_max_node_count=1)},
    ))
    keda = KedaInstall("keda", KedaInstallArgs(provider=cluster.provider, project="my-project",
                                               project_number="123456789012"))
    # The Deployment and Service "vllm-gemma" (VllmGkeWorkload with external_autoscaler=True) exist in "llm-serving".
    scaler = ScaleToZero("gemma-scale-to-zero", ScaleToZeroArgs(
        provider=cluster.provider,
        namespace="llm-serving",
        app_name="vllm-gemma",
        service_port=8000,
        max_replicas=1,
        idle_seconds=900,
        wake_timeout_seconds=1500,
        response_header_seconds=600,
        interceptor_service=keda.interceptor_service,
        interceptor_namespace=keda.namespace,
        interceptor_port=keda.interceptor_port,
        external_scaler_address=keda.external_scaler_address,
        queue_trigger=PrometheusQueueTrigger(
            server_address=prometheus_query_url("my-project"),
            query='sum(vllm:num_requests_waiting{namespace="llm-serving",job="vllm-gemma"})',
            threshold=10, trigger_authentication=keda.trigger_authentication),
    ))
    return pulumi.Output.from_input(scaler.wake_url)
