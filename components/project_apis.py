"""Enable the Google APIs a stack needs, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass(frozen=True)
class ProjectApisArgs:
    project: str
    services: tuple[str, ...]  # e.g. ("run.googleapis.com", "secretmanager.googleapis.com")


class ProjectApis(pulumi.ComponentResource):
    """One ``projects.Service`` per API. Destroying the stack leaves the APIs enabled:
    other workloads in the project may use them (``disable_on_destroy=False``).

    Pass the component in ``depends_on`` of anything that calls these APIs."""

    def __init__(self, name: str, args: ProjectApisArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-serving:project:ProjectApis", name, None, opts)
        if len(set(args.services)) != len(args.services):
            raise ValueError(f"ProjectApis {name}: services lists an API twice: {sorted(args.services)}")
        self.services: dict[str, gcp.projects.Service] = {}
        for service in sorted(args.services):
            short = service.split(".", 1)[0]
            self.services[service] = gcp.projects.Service(
                f"{name}-{short}",
                project=args.project,
                service=service,
                disable_on_destroy=False,
                disable_dependent_services=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.enabled = sorted(args.services)
        self.register_outputs({"enabled": self.enabled})
