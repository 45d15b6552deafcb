"""The Hugging Face token in Secret Manager, created from a Pulumi secret or referenced."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_gcp as gcp

from components.iam import Grants, grant_problems
from components.rules import SECRET_ID, gcp_labels_problems, secret_reference_problem
from components.secret_store import existing_secret_value, secret_resource_name, store_secret

ACCESSOR = "roles/secretmanager.secretAccessor"


@dataclass(frozen=True)
class HuggingFaceTokenArgs:
    project: str
    region: str  # replicas stay in the stack's region
    labels: Mapping[str, str]
    secret_id: str  # used when the secret is created here
    # Exactly one of the two: a Pulumi secret value (`pulumi config set --secret`) or an
    # existing secret (`projects/<p>/secrets/<id>` or an id in `project`).
    token: Optional[pulumi.Input[str]] = None
    existing_secret: Optional[str] = None
    accessors: Grants = field(default_factory=lambda: types.MappingProxyType({}))
    protect: bool = False


class HuggingFaceToken(pulumi.ComponentResource):
    """Secret plus version (or a reference), and `secretAccessor` for each consumer on this
    secret only. The value never leaves the version resource except as a Pulumi secret."""

    def __init__(self, name: str, args: HuggingFaceTokenArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-serving:secrets:HuggingFaceToken", name, None, opts)
        problems = grant_problems(args.accessors, "accessors")
        if (args.token is None) == (args.existing_secret is None):
            problems.append("give either token (a Pulumi secret) or existing_secret, not both or neither")
        if args.existing_secret is not None and secret_reference_problem(args.existing_secret):
            problems.append(f"existing_secret: {secret_reference_problem(args.existing_secret)}")
        if args.token is not None and not SECRET_ID.fullmatch(args.secret_id):
            problems.append(f"secret_id: got {args.secret_id!r}; up to 255 letters, digits, - and _")
        problems += [f"labels: {p}" for p in gcp_labels_problems(args.labels)]
        if problems:
            raise ValueError(f"HuggingFaceToken {name}: " + "; ".join(problems))

        if args.token is not None:
            stored = store_secret(name, parent=self, project=args.project, region=args.region,
                                  secret_id=args.secret_id, labels=args.labels, value=args.token,
                                  protect=args.protect)
            self.secret_name: pulumi.Output[str] = stored.secret.name
            self.secret_id: pulumi.Output[str] = stored.secret.secret_id
            self.value: pulumi.Output[str] = stored.value
            accessor_secret = stored.secret.id
            depends: list[pulumi.Resource] = [stored.version]
        else:
            full_name = secret_resource_name(args.existing_secret or "", args.project)
            self.secret_name = pulumi.Output.from_input(full_name)
            self.secret_id = pulumi.Output.from_input(full_name.rsplit("/", 1)[-1])
            # Read at deploy time for consumers that need the value itself (GKE Secret, Vertex field).
            self.value = existing_secret_value(full_name, parent=self)
            accessor_secret = pulumi.Output.from_input(full_name)
            depends = []

        self.accessors = {
            key: gcp.secretmanager.SecretIamMember(
                f"{name}-{key}-accessor",
                project=args.project,
                secret_id=accessor_secret,
                role=grant.role if grant.role else ACCESSOR,
                member=grant.member,
                opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
            )
            for key, grant in sorted(args.accessors.items())
        }
        self.register_outputs({"secret_name": self.secret_name})
