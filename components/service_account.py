"""A dedicated service account per workload, with a ready `serviceAccount:` member."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from components.iam import role_slug
from components.rules import service_account_id_problem


@dataclass(frozen=True)
class WorkloadServiceAccountArgs:
    project: str
    account_id: str  # 6-30 characters: lowercase letters, digits, hyphens
    display_name: str
    description: str = ""
    # Roles that exist only at project level (log and metric writing). Everything else is
    # granted on the resource it protects, by that resource's component.
    project_roles: tuple[str, ...] = ()
    protect: bool = False  # Pulumi protect on the account: a deleted account's id cannot be reused for 30 days


class WorkloadServiceAccount(pulumi.ComponentResource):
    """A service account whose only project-wide roles are the few that cannot be narrower."""

    def __init__(self, name: str, args: WorkloadServiceAccountArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-serving:iam:WorkloadServiceAccount", name, None, opts)
        problem = service_account_id_problem(args.account_id)
        if problem:
            raise ValueError(f"WorkloadServiceAccount {name}: account_id {problem}; shorten the deployment name "
                             "or the name prefix")
        self.account = gcp.serviceaccount.Account(
            f"{name}-sa",
            project=args.project,
            account_id=args.account_id,
            display_name=args.display_name,
            description=args.description or None,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.email = self.account.email
        self.member = self.account.email.apply(lambda email: f"serviceAccount:{email}")
        self.project_grants = [
            gcp.projects.IAMMember(
                f"{name}-{role_slug(role)}",
                project=args.project,
                role=role,
                member=self.member,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for role in args.project_roles
        ]
        self.register_outputs({"email": self.email, "member": self.member})
