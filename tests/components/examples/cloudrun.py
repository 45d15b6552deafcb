"""CloudRunVllmService: vLLM's OpenAI server on a Cloud Run L4, authenticated, scaling to zero."""

import pulumi

from components.cloudrun import CloudRunVllmService, CloudRunVllmServiceArgs
from components.container import ServingContainer


def example() -> pulumi.Output:
    service = CloudRunVllmService("gemma", CloudRunVllmServiceArgs(
        project="my-project",
        region="us-central1",
        service_name="llm-dev-gemma",
        container=ServingContainer(
            image="us-central1-docker.pkg.dev/my-project/llm-dev-images/vllm-gemma@sha256:" + "0" * 64,
            command=("python3", "-m", "vllm.entrypoints.openai.api_server"),
            args=("--host=0.0.0.0", "--port=8080", "--model=/models/gemma-3-1b-it",
                  "--served-model-name=gemma-3-1b-it"),
            port=8080,
            health_path="/health",
            served_model_name="gemma-3-1b-it",
        ),
        service_account_email="llm-dev-gemma@my-project.iam.gserviceaccount.com",
        min_cpu=4,
        min_memory_gib=16,
        gpu_type="nvidia-l4",
        cpu=8,
        memory_gib=32,
        gpu_zonal_redundancy=False,
        min_replicas=0,
        max_replicas=2,
        max_concurrency=64,
        request_timeout_seconds=600,
        startup_timeout_seconds=1200,
        invokers=("group:ml-team@example.com",),
        labels={"environment": "dev"},
    ))
    return service.uri
