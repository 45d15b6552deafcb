"""The stack's model bucket: weights, LoRA adapters, compile caches."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from components.iam import Grants, grant_problems, role_slug
from components.rules import bucket_name_problem, gcp_labels_problems, soft_delete_days_problem


@dataclass(frozen=True)
class ModelBucketArgs:
    project: str
    bucket_name: str
    location: str  # the stack's region, next to the accelerators reading from it
    labels: Mapping[str, str]
    force_destroy: bool = False
    versioning: bool = False
    soft_delete_days: int = 7
    protect: bool = False
    grants: Grants = field(default_factory=lambda: types.MappingProxyType({}))
    # Real folders (set at creation only; needs uniform bucket-level access, always on here; no versioning).
    hierarchical_namespace: bool = False
    # Anywhere Cache: zonal SSD read caches in these zones of the bucket's region, and their TTL.
    anywhere_cache_zones: tuple[str, ...] = ()
    anywhere_cache_ttl_seconds: int = 86400


class ModelBucket(pulumi.ComponentResource):
    """A private bucket: uniform bucket-level access, public access prevention enforced,
    grants only as additive members on this bucket."""

    def __init__(self, name: str, args: ModelBucketArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-serving:storage:ModelBucket", name, None, opts)
        problems = grant_problems(args.grants, "grants")
        if args.force_destroy and args.protect:
            problems.append("force_destroy and protect contradict each other; a protected bucket keeps its objects")
        for field_name, problem in (("bucket_name", bucket_name_problem(args.bucket_name)),
                                    ("soft_delete_days", soft_delete_days_problem(args.soft_delete_days))):
            if problem:
                problems.append(f"{field_name}: {problem}")
        problems += [f"labels: {p}" for p in gcp_labels_problems(args.labels)]
        problems += _read_path_problems(args)
        if problems:
            raise ValueError(f"ModelBucket {name}: " + "; ".join(problems))

        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            project=args.project,
            name=args.bucket_name,
            location=args.location.upper(),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            force_destroy=args.force_destroy,
            versioning={"enabled": args.versioning},
            soft_delete_policy={"retention_duration_seconds": args.soft_delete_days * 86400},
            labels=dict(args.labels),
            hierarchical_namespace={"enabled": True} if args.hierarchical_namespace else None,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        # Read caches next to the serving nodes; admit on first miss (the only policy left,
        # pulumi-gcp 10.2.0 storage.AnywhereCache) so the first replica's load warms it.
        self.anywhere_caches = [
            gcp.storage.AnywhereCache(
                f"{name}-cache-{zone}",
                bucket=self.bucket.name,
                zone=zone,
                ttl=f"{args.anywhere_cache_ttl_seconds}s",
                opts=pulumi.ResourceOptions(parent=self),
            )
            for zone in args.anywhere_cache_zones
        ]
        self.grants = {
            key: gcp.storage.BucketIAMMember(
                f"{name}-{key}-{role_slug(grant.role)}",
                bucket=self.bucket.name,
                role=grant.role,
                member=grant.member,
                condition=(gcp.storage.BucketIAMMemberConditionArgs(title=grant.condition_title,
                                                                    expression=grant.condition)
                           if grant.condition else None),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for key, grant in sorted(args.grants.items())
        }
        self.name = self.bucket.name
        self.url = self.bucket.url
        self.register_outputs({"name": self.name, "url": self.url})


# Anywhere Cache TTL bounds: 1 hour to 7 days (https://cloud.google.com/storage/docs/anywhere-cache#ttl).
ANYWHERE_CACHE_TTL_MIN, ANYWHERE_CACHE_TTL_MAX = 3600, 7 * 86400


def _read_path_problems(args: ModelBucketArgs) -> list[str]:
    problems = []
    if args.hierarchical_namespace and args.versioning:
        problems.append("hierarchical_namespace: buckets with a hierarchical namespace do not support object "
                        "versioning; turn versioning off")
    region = args.location.lower()
    for zone in args.anywhere_cache_zones:
        if zone.rpartition("-")[0] != region:
            problems.append(f"anywhere_cache_zones: got {zone!r}; a cache serves the bucket from a zone of its "
                            f"region {region} (e.g. {region}-a)")
    if len(set(args.anywhere_cache_zones)) != len(args.anywhere_cache_zones):
        problems.append("anywhere_cache_zones: a zone is listed twice; a bucket has at most one cache per zone")
    if not ANYWHERE_CACHE_TTL_MIN <= args.anywhere_cache_ttl_seconds <= ANYWHERE_CACHE_TTL_MAX:
        problems.append(f"anywhere_cache_ttl_seconds: got {args.anywhere_cache_ttl_seconds}; use "
                        f"{ANYWHERE_CACHE_TTL_MIN} to {ANYWHERE_CACHE_TTL_MAX} (1 hour to 7 days)")
    return problems

