"""ModelImageBuild: a Cloud Build that bakes pinned weights into a vLLM image, rebuilt only when
its inputs change; the result is addressed by digest."""

import pulumi

from components.image_build import ModelImageBuild, ModelImageBuildArgs


def example() -> pulumi.Output:
    build = ModelImageBuild("gemma-image", ModelImageBuildArgs(
        project="my-project",
        region="us-central1",
        repository_url="us-central1-docker.pkg.dev/my-project/llm-dev-images",
        image_name="vllm-gemma-3-1b-it",
        model_id="google/gemma-3-1b-it",
        model_revision="0123456789abcdef0123456789abcdef01234567",
        base_image="us-central1-docker.pkg.dev/my-project/llm-dev-dockerhub/vllm/vllm-openai:v0.32.0",
        hf_token="llm-dev-hf-token",
        build_service_account="llm-dev-build@my-project.iam.gserviceaccount.com",
    ))
    return pulumi.Output.from_input(build.image_tag)
