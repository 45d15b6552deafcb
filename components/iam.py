"""The one IAM vocabulary every component uses: additive grants, keyed by a stable name.

Grants are always ``...IAMMember`` resources. Authoritative bindings and policies would remove
access that someone else granted (service agents included), so this project never creates them.
Each grant is keyed by a name chosen by the caller (usually the consumer's deployment name):
member values are often unknown until apply, and keys keep reordering from replacing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_gcp as gcp

from components.rules import is_public_member


@dataclass(frozen=True)
class Grant:
    """``member`` gets ``role`` on the resource that owns this grant."""

    role: str
    member: pulumi.Input[str]
    # An IAM condition narrowing the grant (e.g. to object prefixes of a bucket), and its title.
    condition: Optional[str] = None
    condition_title: str = "scoped"


Grants = Mapping[str, Grant]


def grant_problems(grants: Grants, field: str) -> list[str]:
    """Problems with a grants map: keys become resource names; roles must be predefined roles."""
    problems = []
    for key, grant in grants.items():
        if not key or not key.replace("-", "").isalnum():
            problems.append(f"{field}: key {key!r} must be letters, digits and hyphens (it names a resource)")
        if not grant.role.startswith("roles/"):
            problems.append(f"{field}.{key}: role {grant.role!r} must be a predefined role such as roles/storage.objectViewer")
        if is_public_member(grant.member):
            problems.append(f"{field}.{key}: {grant.member} would make the resource public; grant named principals instead")
    return problems


def role_slug(role: str) -> str:
    """`roles/storage.objectViewer` -> `storage-objectviewer`, for child resource names."""
    return role.removeprefix("roles/").replace(".", "-").lower()


def bucket_only_condition(bucket: str) -> str:
    """IAM condition matching the bucket resource itself (listing), never an object in it."""
    return f'resource.name == "projects/_/buckets/{bucket}"'


def prefix_condition(bucket: str, prefixes: tuple[str, ...]) -> str:
    """IAM condition matching objects under the given prefixes of one bucket."""
    return " || ".join(f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{prefix}")'
                       for prefix in prefixes)


def scoped_bucket_member(name: str, *, bucket: pulumi.Input[str], role: str, member: pulumi.Input[str], title: str,
                         prefixes: Optional[tuple[str, ...]], parent: pulumi.Resource,
                         aliases: Optional[list[pulumi.Alias]] = None) -> gcp.storage.BucketIAMMember:
    """An additive bucket grant narrowed by an IAM condition: to the objects under ``prefixes``, or, with
    ``prefixes=None``, to the bucket resource itself (listing object names, never reading one)."""
    if prefixes is None:
        description = "Bucket-level checks only: listing object names"
        expression = pulumi.Output.from_input(bucket).apply(bucket_only_condition)
    else:
        description = "Objects under " + ", ".join(prefixes)
        expression = pulumi.Output.from_input(bucket).apply(lambda b: prefix_condition(b, prefixes))
    return gcp.storage.BucketIAMMember(
        name, bucket=bucket, role=role, member=member,
        condition=gcp.storage.BucketIAMMemberConditionArgs(title=title, description=description, expression=expression),
        opts=pulumi.ResourceOptions(parent=parent, aliases=aliases))
