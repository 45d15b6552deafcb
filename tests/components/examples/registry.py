"""ArtifactRegistry: a repository for built images and a pull-through cache of Docker Hub."""

import pulumi

from components.registry import ArtifactRegistry, ArtifactRegistryArgs


def example() -> pulumi.Output:
    registry = ArtifactRegistry("registry", ArtifactRegistryArgs(
        project="my-project",
        location="us-central1",
        labels={"environment": "dev"},
        images_repository_id="llm-dev-images",
        dockerhub_repository_id="llm-dev-dockerhub",
    ))
    return pulumi.Output.from_input(registry.images_path)
