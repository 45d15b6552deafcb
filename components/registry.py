"""Artifact Registry: the stack's own images, and an in-region proxy of Docker Hub."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.iam import Grants, grant_problems, role_slug
from components.rules import gcp_labels_problems, repository_id_problem


@dataclass(frozen=True)
class ArtifactRegistryArgs:
    project: str
    location: str
    labels: Mapping[str, str]
    images_repository_id: str  # images the stack builds (weights baked in)
    dockerhub_repository_id: str  # remote repository proxying Docker Hub
    docker_hub_remote: bool = True
    keep_recent_versions: int = 10
    delete_untagged_after_days: int = 14
    # Runtimes that pull get reader on both repositories; builders get writer on the images one.
    readers: Grants = field(default_factory=lambda: types.MappingProxyType({}))
    writers: Grants = field(default_factory=lambda: types.MappingProxyType({}))
    protect: bool = False  # Pulumi protect on both repositories (prod's Cloud Run runs images by digest from them)


class ArtifactRegistry(pulumi.ComponentResource):
    """Two Docker repositories with cleanup policies and per-repository grants."""

    def __init__(self, name: str, args: ArtifactRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-serving:registry:ArtifactRegistry", name, None, opts)
        problems = grant_problems(args.readers, "readers") + grant_problems(args.writers, "writers")
        for field_name in ("images_repository_id", "dockerhub_repository_id"):
            problem = repository_id_problem(getattr(args, field_name))
            if problem:
                problems.append(f"{field_name}: {problem}")
        problems += [f"labels: {p}" for p in gcp_labels_problems(args.labels)]
        if problems:
            raise ValueError(f"ArtifactRegistry {name}: " + "; ".join(problems))
        host = f"{args.location}-docker.pkg.dev/{args.project}"
        cleanup: list[gcp.artifactregistry.RepositoryCleanupPolicyArgsDict] = [
            {"id": "keep-recent", "action": "KEEP",
             "most_recent_versions": {"keep_count": args.keep_recent_versions}},
            {"id": "delete-untagged", "action": "DELETE",
             "condition": {"tag_state": "UNTAGGED", "older_than": f"{args.delete_untagged_after_days * 86400}s"}},
        ]
        self.images = gcp.artifactregistry.Repository(
            f"{name}-images",
            project=args.project,
            location=args.location,
            repository_id=args.images_repository_id,
            format="DOCKER",
            mode="STANDARD_REPOSITORY",
            description="Images built by this stack (model weights baked in).",
            docker_config={"immutable_tags": True},
            cleanup_policies=cleanup,
            labels=dict(args.labels),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        repositories = [self.images]
        self.images_path = f"{host}/{args.images_repository_id}"
        self.dockerhub = None
        self.dockerhub_path = None
        if args.docker_hub_remote:
            self.dockerhub = gcp.artifactregistry.Repository(
                f"{name}-dockerhub",
                project=args.project,
                location=args.location,
                repository_id=args.dockerhub_repository_id,
                format="DOCKER",
                mode="REMOTE_REPOSITORY",
                description="Pull-through cache of Docker Hub for upstream vLLM images.",
                remote_repository_config={
                    "description": "Docker Hub",
                    "docker_repository": {"public_repository": "DOCKER_HUB"},
                },
                cleanup_policies=cleanup,
                labels=dict(args.labels),
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
            )
            repositories.append(self.dockerhub)
            self.dockerhub_path = f"{host}/{args.dockerhub_repository_id}"

        self.grants = []
        for repo in repositories:
            suffix = "images" if repo is self.images else "dockerhub"
            grant_sets = [args.readers] + ([args.writers] if repo is self.images else [])
            for grants in grant_sets:
                for key, grant in sorted(grants.items()):
                    self.grants.append(
                        gcp.artifactregistry.RepositoryIamMember(
                            f"{name}-{suffix}-{key}-{role_slug(grant.role)}",
                            project=args.project,
                            location=args.location,
                            repository=repo.repository_id,
                            role=grant.role,
                            member=grant.member,
                            opts=pulumi.ResourceOptions(parent=self),
                        )
                    )
        self.register_outputs({"images_path": self.images_path, "dockerhub_path": self.dockerhub_path})
