"""VertexVllmEndpoint: a Model Garden vLLM container on a dedicated Vertex AI endpoint."""

import pulumi

from components.container import ServingContainer
from components.vertex import VertexVllmEndpoint, VertexVllmEndpointArgs


def example() -> pulumi.Output:
    endpoint = VertexVllmEndpoint("llama", VertexVllmEndpointArgs(
        region="us-central1",
        hugging_face_model_id="meta-llama/Llama-3.1-8B-Instruct",
        container=ServingContainer(
            image="us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:20250304_0916_RC01",
            command=("python", "-m", "vllm.entrypoints.api_server"),
            args=("--host=0.0.0.0", "--port=8080", "--model=meta-llama/Llama-3.1-8B-Instruct",
                  "--tensor-parallel-size=1", "--max-model-len=8192"),
            port=8080,
            health_path="/ping",
            predict_route="/generate",
            served_model_name="meta-llama/Llama-3.1-8B-Instruct",
            env={"MODEL_ID": "meta-llama/Llama-3.1-8B-Instruct", "DEPLOY_SOURCE": "pulumi"},
        ),
        machine_type="g2-standard-12",
        accelerator_type="NVIDIA_L4",
        accelerator_count=1,
        machine_accelerators={"g2-standard-12": ("NVIDIA_L4", 1)},
        hf_token=pulumi.Output.secret("hf_example_not_a_real_token"),
        accept_eula=True,
        hugging_face_cache_enabled=True,
        shared_memory_size_mb=16384,
        deployment_timeout_seconds=7200,
        min_replicas=1,
        max_replicas=1,
        duty_cycle_target=60,
        spot=False,
        dedicated_endpoint=True,
    ))
    return endpoint.openai_base_url
