"""VllmGkeWorkload: vLLM on the cluster's TPU pool, weights through GCS FUSE, autoscaled by an HPA
on vLLM's queue length."""

import pulumi

from components.container import ServingContainer
from components.gke_cluster import GkeCluster, GkeClusterArgs, NodePoolSpec
from components.gke_workload import VllmGkeWorkload, VllmGkeWorkloadArgs
from tests.components.examples.gke_cluster import V6E


def example() -> pulumi.Output:
    cluster = GkeCluster("gke", GkeClusterArgs(
        project="my-project", location="us-east5-b", cluster_name="llm-dev-gke", hardware=V6E,
        node_pools={"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_max_node_count=2)},
    ))
    workload = VllmGkeWorkload("llama", VllmGkeWorkloadArgs(
        provider=cluster.provider,
        project="my-project",
        project_number="123456789012",
        model_bucket="my-project-llm-models",
        container=ServingContainer(
            image="vllm/vllm-tpu:v0.26.0",
            command=("python3", "-m", "vllm.entrypoints.openai.api_server"),
            args=("--host=0.0.0.0", "--port=8000", "--model=meta-llama/Llama-3.1-70B",
                  "--tensor-parallel-size=8", "--max-model-len=8192", "--download-dir=/data"),
            port=8000,
            health_path="/health",
            served_model_name="meta-llama/Llama-3.1-70B",
        ),
        accelerator=cluster.placement("tpu"),
        namespace="llm-serving",
        app_name="vllm-llama",
        hf_token=pulumi.Output.secret("hf_example_not_a_real_token"),
        startup_timeout_seconds=3600,
        min_replicas=1,
        max_replicas=2,
        autoscaling_metric="vllm:num_requests_waiting",
        autoscaling_target=10,
        mount_path="/data",
        cpu_request="90",
        memory_request="720Gi",
        bucket_prefixes=("models--meta-llama--Llama-3.1-70B/", ".locks/models--meta-llama--Llama-3.1-70B/"),
        api_key=pulumi.Output.secret("example-not-a-real-key"),
        allowed_cidrs=("10.128.0.0/9",),
    ))
    return pulumi.Output.from_input(workload.hpa_metric_name)
