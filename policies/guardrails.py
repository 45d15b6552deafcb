"""Guardrails for the llm-serving stacks, as Pulumi policies.

This module only defines policies; `__main__.py` wraps them in a PolicyPack.
Keep it importable without side effects: the unit tests call each policy's
`validate` directly.

Properties arrive with their camelCase wire names (`uniformBucketLevelAccess`,
`template.containers[].envs[].valueSource.secretKeyRef`, ...). At run time they
are read-only Mapping/Sequence proxies, not dicts and lists, so every helper
here checks against the abstract types.

Pack configuration is per policy, keyed by policy name (see
`policies/config/*.json`). Every policy also applies its schema defaults itself,
so it behaves the same whether or not a config file is passed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

try:  # imported as policies.guardrails (the tests)
    from . import rules
except ImportError:  # run by the policy CLI, with this directory on sys.path
    import rules  # type: ignore[no-redef]
from pulumi_policy import (
    PolicyConfigSchema,
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

# pulumi_policy types its ReportViolation callback as (message, urn); the urn is optional when called.
Report = Callable[..., None]

ENVIRONMENTS = ["dev", "staging", "prod"]


def _is_seq(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _get(obj: Any, *path: Any, default: Any = None) -> Any:
    """Walks `path` (keys and list indexes) through `obj`; `default` when any step is missing."""
    cur = obj
    for key in path:
        if isinstance(key, int):
            if not _is_seq(cur) or key >= len(cur):
                return default
            cur = cur[key]
        else:
            if not isinstance(cur, Mapping) or key not in cur:
                return default
            cur = cur[key]
        if cur is None:
            return default
    return cur


def _items(value: Any) -> list:
    return list(value) if _is_seq(value) else []


def _as_int(value: Any, default: int = 0) -> int:
    """Integers arrive as int, float or (Kubernetes quantities, Cloud Run limits) str."""
    if value is None or isinstance(value, bool):
        return default
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _config(args: Any, defaults: Mapping[str, Any]) -> dict:
    merged = dict(defaults)
    merged.update(dict(args.get_config() or {}))
    return merged


def _describe(resource_type: str, name: str) -> str:
    """`Bucket 'models' (gcp:storage/bucket:Bucket)`: what a violation message starts with."""
    kind = resource_type.rsplit(":", 1)[-1]
    return f"{kind} '{name}' ({resource_type})"


def _as_mapping(value: Any) -> Mapping:
    """Provider config may hold a map as a JSON string."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, Mapping) else {}
    return {}


# --------------------------------------------------------------------------
# 1. No public invokers on Cloud Run services or Vertex endpoints
# --------------------------------------------------------------------------

# IAM resources that can grant access to a Cloud Run service or a Vertex endpoint,
# mapped to how they name principals.
_INVOKER_MEMBER_TYPES = {
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
    "gcp:cloudrun/iamMember:IamMember",
    "gcp:vertex/aiEndpointIamMember:AiEndpointIamMember",
}
_INVOKER_BINDING_TYPES = {
    "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding",
    "gcp:cloudrun/iamBinding:IamBinding",
    "gcp:vertex/aiEndpointIamBinding:AiEndpointIamBinding",
}
_INVOKER_POLICY_TYPES = {
    "gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy",
    "gcp:cloudrun/iamPolicy:IamPolicy",
    "gcp:vertex/aiEndpointIamPolicy:AiEndpointIamPolicy",
}


def _public_members(resource_type: str, props: Mapping) -> list[str]:
    if resource_type in _INVOKER_MEMBER_TYPES:
        members = [_get(props, "member", default="")]
    elif resource_type in _INVOKER_BINDING_TYPES:
        members = _items(_get(props, "members"))
    elif resource_type in _INVOKER_POLICY_TYPES:
        policy = _as_mapping(_get(props, "policyData", default=""))
        members = [m for b in _items(_get(policy, "bindings")) for m in _items(_get(b, "members"))]
    else:
        return []
    return [m for m in members if rules.is_public_member(m)]


def _validate_no_public_invokers(args: ResourceValidationArgs, report: Report) -> None:
    config = _config(args, {"allowPublicInvokers": False})
    if config["allowPublicInvokers"] is True:
        return
    what = _describe(args.resource_type, args.name)
    fix = ("Grant roles/run.invoker (Cloud Run) or roles/aiplatform.user (Vertex) to named service "
           "accounts or groups instead, or set allowPublicInvokers: true for this policy in the "
           "environment's policy config if the endpoint must be public.")
    if args.resource_type == "gcp:cloudrunv2/service:Service" and _get(args.props, "invokerIamDisabled") is True:
        report(f"{what} sets invokerIamDisabled=true, which lets anyone on the internet call it. "
               f"Remove invoker_iam_disabled. {fix}")
        return
    public = _public_members(args.resource_type, args.props)
    if public:
        report(f"{what} grants {args.props.get('role', 'access')} to {', '.join(sorted(set(public)))}, "
               f"which makes the endpoint public. {fix}")


no_public_invokers = ResourceValidationPolicy(
    name="no-public-invokers",
    description="Cloud Run services and Vertex AI endpoints are never invokable by allUsers or "
                "allAuthenticatedUsers unless the environment explicitly allows it.",
    validate=_validate_no_public_invokers,
    config_schema=PolicyConfigSchema(
        properties={
            "allowPublicInvokers": {
                "type": "boolean",
                "default": False,
                "description": "Allow allUsers/allAuthenticatedUsers invokers (public endpoints).",
            },
        },
    ),
)


# --------------------------------------------------------------------------
# 2. No token in a plain environment variable
# --------------------------------------------------------------------------

DEFAULT_SECRET_ENV_PATTERN = r"(^|_)TOKEN(_|$)"
_POD_CONTAINER_KEYS = ("containers", "initContainers", "ephemeralContainers")


def _secret_env_regex(config: Mapping) -> re.Pattern:
    return re.compile(str(config["secretEnvNamePattern"]), re.IGNORECASE)


def _cloud_run_containers(resource_type: str, props: Mapping) -> list:
    if resource_type == "gcp:cloudrunv2/service:Service":
        return _items(_get(props, "template", "containers"))
    if resource_type == "gcp:cloudrunv2/job:Job":
        return _items(_get(props, "template", "template", "containers"))
    return []


def _k8s_containers(node: Any) -> Iterator[Mapping]:
    """Every container of every pod spec found anywhere in a Kubernetes object (also CRs)."""
    if isinstance(node, Mapping):
        for key in node:
            value = node[key]
            if key in _POD_CONTAINER_KEYS and _is_seq(value):
                for container in value:
                    if isinstance(container, Mapping):
                        yield container
            else:
                yield from _k8s_containers(value)
    elif _is_seq(node):
        for item in node:
            yield from _k8s_containers(item)


def _validate_no_plaintext_tokens(args: ResourceValidationArgs, report: Report) -> None:
    config = _config(args, {"secretEnvNamePattern": DEFAULT_SECRET_ENV_PATTERN})
    secret_name = _secret_env_regex(config)
    what = _describe(args.resource_type, args.name)
    rtype = args.resource_type

    if rtype.startswith("gcp:cloudrunv2/"):
        for container in _cloud_run_containers(rtype, args.props):
            for env in _items(_get(container, "envs")):
                name = str(_get(env, "name", default=""))
                if secret_name.search(name) and _get(env, "value") not in (None, ""):
                    report(f"{what}: container '{_get(container, 'name', default='?')}' sets {name} "
                           "as a literal value. Store it in Secret Manager and reference it with "
                           "env value_source.secret_key_ref (secret + version) instead of value.")
    elif rtype.startswith("kubernetes:"):
        for container in _k8s_containers(args.props):
            for env in _items(_get(container, "env")):
                name = str(_get(env, "name", default=""))
                if not secret_name.search(name):
                    continue
                if _get(env, "value") not in (None, ""):
                    source = "a literal value"
                elif _get(env, "valueFrom") is not None and _get(env, "valueFrom", "secretKeyRef") is None:
                    source = "a non-Secret source (valueFrom without secretKeyRef)"
                else:
                    continue
                report(f"{what}: container '{_get(container, 'name', default='?')}' sets {name} from "
                       f"{source}. Put the token in a Kubernetes Secret and use "
                       "env valueFrom.secretKeyRef (or envFrom.secretRef) instead.")
    elif rtype == "gcp:vertex/aiEndpointWithModelGardenDeployment:AiEndpointWithModelGardenDeployment":
        for env in _items(_get(args.props, "modelConfig", "containerSpec", "envs")):
            name = str(_get(env, "name", default=""))
            if secret_name.search(name):
                report(f"{what}: model_config.container_spec.envs sets {name}; Vertex stores container "
                       "env values in plain text in the model resource. Remove it and pass the Hugging "
                       "Face token through model_config.hugging_face_access_token from a Pulumi secret.")


no_plaintext_tokens = ResourceValidationPolicy(
    name="no-plaintext-tokens",
    description="Tokens (HF_TOKEN, HUGGING_FACE_HUB_TOKEN, any *_TOKEN) are never set as plain "
                "environment variables on Cloud Run, Kubernetes or Vertex AI containers.",
    validate=_validate_no_plaintext_tokens,
    config_schema=PolicyConfigSchema(
        properties={
            "secretEnvNamePattern": {
                "type": "string",
                "default": DEFAULT_SECRET_ENV_PATTERN,
                "description": "Case-insensitive regular expression; environment variables whose "
                               "name matches must come from a secret reference. The default matches "
                               "TOKEN as a word (HF_TOKEN, HUGGING_FACE_HUB_TOKEN) but not "
                               "MAX_NUM_BATCHED_TOKENS.",
            },
        },
    ),
)


# --------------------------------------------------------------------------
# 3. Buckets: uniform bucket-level access and public access prevention
# --------------------------------------------------------------------------

def _validate_bucket_access(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != "gcp:storage/bucket:Bucket":
        return
    what = _describe(args.resource_type, args.name)
    if _get(args.props, "uniformBucketLevelAccess") is not True:
        report(f"{what} does not enable uniform bucket-level access. "
               "Set uniform_bucket_level_access=True so access is controlled by IAM only, not object ACLs.")
    pap = _get(args.props, "publicAccessPrevention")
    if pap != "enforced":
        report(f"{what} has public_access_prevention={pap!r}. "
               "Set public_access_prevention=\"enforced\" so no object can ever be made public.")


bucket_access = ResourceValidationPolicy(
    name="bucket-uniform-access-and-pap",
    description="Cloud Storage buckets use uniform bucket-level access and enforced public access prevention.",
    validate=_validate_bucket_access,
)


# --------------------------------------------------------------------------
# 4. No authoritative IAM resources
# --------------------------------------------------------------------------

_AUTHORITATIVE_IAM = re.compile(r"I[Aa][Mm](Policy|Binding)$")


def _validate_no_authoritative_iam(args: ResourceValidationArgs, report: Report) -> None:
    config = _config(args, {"allowedTypes": []})
    type_name = args.resource_type.rsplit(":", 1)[-1]
    if not _AUTHORITATIVE_IAM.search(type_name) or args.resource_type in list(config["allowedTypes"]):
        return
    additive = re.sub(r"(Policy|Binding)$", "Member", args.resource_type)
    report(f"{_describe(args.resource_type, args.name)} is authoritative: it replaces every grant "
           "it does not list, including Google-managed service agents and grants made by other stacks. "
           f"Use one additive {additive} per principal and role instead.")


no_authoritative_iam = ResourceValidationPolicy(
    name="no-authoritative-iam",
    description="IAM is granted only with additive *IamMember resources, never authoritative "
                "*IamPolicy or *IamBinding resources.",
    validate=_validate_no_authoritative_iam,
    config_schema=PolicyConfigSchema(
        properties={
            "allowedTypes": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "Type tokens exempted on purpose (for example a project-level policy "
                               "owned by this stack alone).",
            },
        },
    ),
)


# --------------------------------------------------------------------------
# 5. Required labels
# --------------------------------------------------------------------------

DEFAULT_REQUIRED_LABELS = ["managed-by", "app", "environment"]

# GCP resource types used by this project that take labels, and where the labels live.
# Other `gcp:` types are checked when they carry a top-level `labels` property.
LABEL_PATHS: dict[str, tuple[str, ...]] = {
    "gcp:storage/bucket:Bucket": ("labels",),
    "gcp:secretmanager/secret:Secret": ("labels",),
    "gcp:artifactregistry/repository:Repository": ("labels",),
    "gcp:cloudrunv2/service:Service": ("labels",),
    "gcp:cloudrunv2/job:Job": ("labels",),
    "gcp:container/cluster:Cluster": ("resourceLabels",),
    "gcp:container/nodePool:NodePool": ("nodeConfig", "resourceLabels"),
    # Monitoring: `userLabels` are the resource's labels; a channel's `labels` configure it (email_address).
    "gcp:monitoring/notificationChannel:NotificationChannel": ("userLabels",),
    "gcp:monitoring/alertPolicy:AlertPolicy": ("userLabels",),
}


def _labels_path(resource_type: str, props: Mapping) -> Optional[tuple[str, ...]]:
    if resource_type in LABEL_PATHS:
        return LABEL_PATHS[resource_type]
    if resource_type.startswith("gcp:") and "labels" in props:
        return ("labels",)
    return None


def _validate_required_labels(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type.startswith("pulumi:providers:"):
        return
    path = _labels_path(args.resource_type, args.props)
    if path is None:
        return
    config = _config(args, {"requiredLabels": DEFAULT_REQUIRED_LABELS, "environment": None})
    labels = dict(_as_mapping(_get(args.props, *path, default={})))
    # Labels set once on the provider (default_labels) reach every resource it manages.
    if args.provider is not None:
        labels = {**dict(_as_mapping(_get(args.provider.props, "defaultLabels", default={}))), **labels}
    what = _describe(args.resource_type, args.name)
    where = ".".join(path)
    missing = [key for key in config["requiredLabels"] if not labels.get(key)]
    if missing:
        report(f"{what} is missing the label(s) {', '.join(missing)} in {where}. "
               "Add them (managed-by: pulumi, app: llm-serving, environment: <dev|staging|prod>), "
               "for example through the project's common labels helper.")
    expected_env = config.get("environment")
    actual_env = labels.get("environment")
    if expected_env and actual_env and actual_env != expected_env:
        report(f"{what} has label environment={actual_env!r} but this stack is {expected_env!r}. "
               f"Set {where}.environment to {expected_env!r}.")


required_labels = ResourceValidationPolicy(
    name="required-labels",
    description="Every GCP resource that takes labels carries managed-by, app and environment.",
    validate=_validate_required_labels,
    config_schema=PolicyConfigSchema(
        properties={
            "requiredLabels": {
                "type": "array",
                "items": {"type": "string"},
                "default": DEFAULT_REQUIRED_LABELS,
                "description": "Label keys every labelled GCP resource must carry, with a non-empty value.",
            },
            "environment": {
                "type": "string",
                "enum": ENVIRONMENTS,
                "description": "When set, the environment label must have this value.",
            },
        },
    ),
)


# --------------------------------------------------------------------------
# 6. Accelerator budget (stack policy)
# --------------------------------------------------------------------------

DEFAULT_ACCELERATOR_BUDGET = {"gpus": 4, "tpuChips": 8}

# GPUs attached to machine types that carry their GPUs implicitly.
_G2_GPUS = {"g2-standard-4": 1, "g2-standard-8": 1, "g2-standard-12": 1, "g2-standard-16": 1,
            "g2-standard-24": 2, "g2-standard-32": 1, "g2-standard-48": 4, "g2-standard-96": 8}
_GPU_MACHINE = re.compile(r"^a\d\w*-\w+-(\d+)g$")          # a2-highgpu-2g, a3-highgpu-8g
_TPU_MACHINE = re.compile(r"^(ct\w+|tpu\w*)-\w+-(\d+)t$")   # ct6e-standard-8t, ct5lp-hightpu-4t


@dataclass(frozen=True)
class AcceleratorUse:
    """Accelerators one resource may hold at its maximum scale."""

    urn: str
    label: str
    gpus: int
    tpu_chips: int
    formula: str


def _machine_accelerators(machine_type: str) -> tuple[int, int]:
    """(gpus, tpu_chips) implied by a machine type alone."""
    if machine_type in _G2_GPUS:
        return _G2_GPUS[machine_type], 0
    if match := _GPU_MACHINE.match(machine_type):
        return int(match.group(1)), 0
    if match := _TPU_MACHINE.match(machine_type):
        return 0, int(match.group(2))
    return 0, 0


def _vertex_use(res: PolicyResource) -> Optional[AcceleratorUse]:
    dedicated = _get(res.props, "deployConfig", "dedicatedResources", default={})
    spec = _get(dedicated, "machineSpec", default={})
    count = _as_int(_get(spec, "acceleratorCount"))
    accel_type = str(_get(spec, "acceleratorType", default=""))
    machine = str(_get(spec, "machineType", default=""))
    if count:
        gpus, chips = (0, count) if accel_type.upper().startswith("TPU") else (count, 0)
    else:
        gpus, chips = _machine_accelerators(machine)
    if not gpus and not chips:
        return None
    hosts = max(_as_int(_get(spec, "multihostGpuNodeCount"), 1), 1)
    replicas = _as_int(_get(dedicated, "maxReplicaCount")) or _as_int(_get(dedicated, "minReplicaCount")) or 1
    per_replica = (gpus or chips) * hosts
    unit = "GPU" if gpus else "TPU chip"
    return AcceleratorUse(res.urn, _describe(res.resource_type, res.name), gpus * hosts * replicas,
                          chips * hosts * replicas, f"{per_replica} {unit}(s) x {replicas} max replicas")


def _cloud_run_use(res: PolicyResource, report: Report) -> Optional[AcceleratorUse]:
    per_instance = sum(_as_int(_get(c, "resources", "limits", "nvidia.com/gpu"))
                       for c in _items(_get(res.props, "template", "containers")))
    if not per_instance:
        return None
    service_max = _as_int(_get(res.props, "scaling", "maxInstanceCount"))
    manual = _as_int(_get(res.props, "scaling", "manualInstanceCount"))
    revision_max = _as_int(_get(res.props, "template", "scaling", "maxInstanceCount"))
    instances = service_max or revision_max or manual
    what = _describe(res.resource_type, res.name)
    if not instances:
        report(f"{what} requests {per_instance} GPU(s) per instance but sets no maximum instance count, "
               "so its GPU use is unbounded. Set template.scaling.max_instance_count (or "
               "scaling.max_instance_count).", res.urn)
        return None
    return AcceleratorUse(res.urn, what, per_instance * instances, 0,
                          f"{per_instance} GPU(s) x {instances} max instances")


def _zones(res: PolicyResource, clusters: Mapping[str, PolicyResource]) -> int:
    locations = _items(_get(res.props, "nodeLocations"))
    if locations:
        return len(locations)
    cluster_ref = str(_get(res.props, "cluster", default=""))
    cluster = clusters.get(cluster_ref.rsplit("/", 1)[-1])
    if cluster is not None and _items(_get(cluster.props, "nodeLocations")):
        return len(_items(_get(cluster.props, "nodeLocations")))
    location = str(_get(res.props, "location", default="") or
                   (_get(cluster.props, "location", default="") if cluster is not None else ""))
    # A zone ends in -a, -b, ...; a regional pool spreads over the region's default zones (3).
    return 1 if re.search(r"-[a-z]$", location) else 3


def _node_pool_use(res: PolicyResource, clusters: Mapping[str, PolicyResource]) -> Optional[AcceleratorUse]:
    node_config = _get(res.props, "nodeConfig", default={})
    machine = str(_get(node_config, "machineType", default=""))
    gpus = sum(_as_int(_get(a, "count")) for a in _items(_get(node_config, "guestAccelerators")))
    chips = 0
    if not gpus:
        gpus, chips = _machine_accelerators(machine)
    if not gpus and not chips:
        return None
    autoscaling = _get(res.props, "autoscaling")
    if autoscaling is not None and _as_int(_get(autoscaling, "totalMaxNodeCount")):
        nodes = _as_int(_get(autoscaling, "totalMaxNodeCount"))
        how = f"{nodes} total max nodes"
    elif autoscaling is not None and _as_int(_get(autoscaling, "maxNodeCount")):
        per_zone, zones = _as_int(_get(autoscaling, "maxNodeCount")), _zones(res, clusters)
        nodes = per_zone * zones
        how = f"{per_zone} max nodes x {zones} zone(s)"
    else:
        per_zone = _as_int(_get(res.props, "nodeCount")) or _as_int(_get(res.props, "initialNodeCount")) or 1
        zones = _zones(res, clusters)
        nodes = per_zone * zones
        how = f"{per_zone} node(s) x {zones} zone(s)"
    unit = "GPU" if gpus else "TPU chip"
    return AcceleratorUse(res.urn, _describe(res.resource_type, res.name), gpus * nodes, chips * nodes,
                          f"{gpus or chips} {unit}(s) per node x {how}")


def accelerator_uses(resources: Sequence[PolicyResource], report: Report) -> list[AcceleratorUse]:
    """What each accelerator-holding resource may use at max scale."""
    clusters = {str(_get(r.props, "name", default=r.name)): r for r in resources
                if r.resource_type == "gcp:container/cluster:Cluster"}
    uses: list[AcceleratorUse] = []
    for res in resources:
        if res.resource_type == "gcp:vertex/aiEndpointWithModelGardenDeployment:AiEndpointWithModelGardenDeployment":
            use = _vertex_use(res)
        elif res.resource_type == "gcp:cloudrunv2/service:Service":
            use = _cloud_run_use(res, report)
        elif res.resource_type == "gcp:container/nodePool:NodePool":
            use = _node_pool_use(res, clusters)
        else:
            use = None
        if use is not None:
            uses.append(use)
    return uses


def _validate_accelerator_budget(args: StackValidationArgs, report: Report) -> None:
    config = _config(args, {"acceleratorBudget": DEFAULT_ACCELERATOR_BUDGET})
    budget = {**DEFAULT_ACCELERATOR_BUDGET, **dict(config["acceleratorBudget"] or {})}
    uses = accelerator_uses(args.resources, report)
    for kind, attr, unit in (("gpus", "gpus", "GPUs"), ("tpuChips", "tpu_chips", "TPU chips")):
        contributors = [u for u in uses if getattr(u, attr)]
        total = sum(getattr(u, attr) for u in contributors)
        limit = _as_int(budget[kind])
        if total <= limit:
            continue
        detail = "; ".join(f"{u.label}: {u.formula} = {getattr(u, attr)}" for u in contributors)
        report(f"The stack can scale to {total} {unit}, over its budget of {limit} "
               f"(acceleratorBudget.{kind}). Contributors: {detail}. Lower max_replica_count / "
               "max_instance_count / total_max_node_count on these resources, or raise "
               f"acceleratorBudget.{kind} in this environment's policy config (and the quota behind it).")


accelerator_budget = StackValidationPolicy(
    name="accelerator-budget",
    description="GPUs and TPU chips the stack can reach at maximum scale (Vertex replicas, Cloud Run "
                "instances, GKE nodes) stay within the environment's budget.",
    validate=_validate_accelerator_budget,
    config_schema=PolicyConfigSchema(
        properties={
            "acceleratorBudget": {
                "type": "object",
                "description": "Maximum accelerators the stack may reach at full scale.",
                "properties": {
                    "gpus": {"type": "integer", "minimum": 0, "default": DEFAULT_ACCELERATOR_BUDGET["gpus"]},
                    "tpuChips": {"type": "integer", "minimum": 0,
                                 "default": DEFAULT_ACCELERATOR_BUDGET["tpuChips"]},
                },
                "additionalProperties": False,
                "default": DEFAULT_ACCELERATOR_BUDGET,
            },
        },
    ),
)


# --------------------------------------------------------------------------
# 7. Deletion protection on prod clusters
# --------------------------------------------------------------------------

def _validate_prod_cluster_deletion_protection(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != "gcp:container/cluster:Cluster":
        return
    config = _config(args, {"environment": None})
    label_env = _get(args.props, "resourceLabels", "environment")
    if "prod" not in (label_env, config.get("environment")):
        return
    if _get(args.props, "deletionProtection") is not True:
        report(f"{_describe(args.resource_type, args.name)} is a prod cluster without deletion protection. "
               "Set deletion_protection=True (and keep protect=True in its resource options); turn it off "
               "only in the change that deliberately deletes the cluster.")


prod_cluster_deletion_protection = ResourceValidationPolicy(
    name="prod-cluster-deletion-protection",
    description="GKE clusters in prod keep deletion protection on.",
    validate=_validate_prod_cluster_deletion_protection,
    config_schema=PolicyConfigSchema(
        properties={
            "environment": {
                "type": "string",
                "enum": ENVIRONMENTS,
                "description": "The stack's environment; with prod, every cluster is treated as prod "
                               "even without an environment label.",
            },
        },
    ),
)


# --------------------------------------------------------------------------
# 8. No unauthenticated public endpoint on GKE
# --------------------------------------------------------------------------

K8S_SERVICE = "kubernetes:core/v1:Service"
K8S_DEPLOYMENT = "kubernetes:apps/v1:Deployment"
INTERNAL_LB_ANNOTATION = "networking.gke.io/load-balancer-type"
# The stack records each acknowledgement of a public endpoint here (comma-separated).
PUBLIC_ACK_ANNOTATION = "llm-serving/public-endpoint"
API_KEY_ENV = "VLLM_API_KEY"


def _is_public_service(props: Mapping) -> bool:
    if _get(props, "spec", "type") != "LoadBalancer":
        return False
    return _get(props, "metadata", "annotations", INTERNAL_LB_ANNOTATION, default="") != "Internal"


def _selects(selector: Mapping, labels: Mapping) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _requires_api_key(deployment: PolicyResource) -> bool:
    for container in _k8s_containers(_get(deployment.props, "spec", "template", "spec", default={})):
        for env in _items(_get(container, "env")):
            if _get(env, "name") == API_KEY_ENV and _get(env, "valueFrom", "secretKeyRef") is not None:
                return True
    return False


def _validate_no_unauthenticated_public_endpoints(args: StackValidationArgs, report: Report) -> None:
    config = _config(args, {"environment": None})
    prod = config.get("environment") == "prod"
    deployments = [r for r in args.resources if r.resource_type == K8S_DEPLOYMENT]
    for service in args.resources:
        if service.resource_type != K8S_SERVICE or not _is_public_service(service.props):
            continue
        what = _describe(service.resource_type, service.name)
        namespace = _get(service.props, "metadata", "namespace", default="default")
        selector = dict(_get(service.props, "spec", "selector", default={}))
        backends = [d for d in deployments if _get(d.props, "metadata", "namespace", default="default") == namespace
                    and _selects(selector, dict(_get(d.props, "spec", "template", "metadata", "labels", default={})))]
        open_backends = [d.name for d in backends if not _requires_api_key(d)]
        if not backends or open_backends:
            report(f"{what} is an external load balancer in front of {', '.join(open_backends) or 'pods this stack does not define'}, "
                   f"which require no API key. Give the server {API_KEY_ENV} from a Kubernetes Secret "
                   f"(deployments.<name>.gke.apiKey), or make the Service internal "
                   f"({INTERNAL_LB_ANNOTATION}: Internal).", service.urn)
        acknowledged = str(_get(service.props, "metadata", "annotations", PUBLIC_ACK_ANNOTATION, default="")).split(",")
        if "acknowledged" not in acknowledged:
            report(f"{what} is an external load balancer that nobody acknowledged; set "
                   "deployments.<name>.gke.acknowledgePublicEndpoint (recorded as the "
                   f"{PUBLIC_ACK_ANNOTATION} annotation) or keep the internal load balancer.", service.urn)
        elif prod and "prod-acknowledged" not in acknowledged:
            report(f"{what} is an external load balancer in prod without the prod-only acknowledgement; set "
                   "deployments.<name>.gke.acknowledgePublicEndpointInProd or keep the internal load balancer.",
                   service.urn)


no_unauthenticated_public_endpoints = StackValidationPolicy(
    name="no-unauthenticated-public-endpoints",
    description="A Kubernetes LoadBalancer Service reachable from the internet fronts only servers that "
                "require an API key, and is acknowledged (twice in prod).",
    validate=_validate_no_unauthenticated_public_endpoints,
    config_schema=PolicyConfigSchema(
        properties={
            "environment": {"type": "string", "enum": ENVIRONMENTS,
                            "description": "With prod, the prod-only acknowledgement is required too."},
        },
    ),
)


# --------------------------------------------------------------------------
# 9. No token in a plain input
# --------------------------------------------------------------------------

# Server flags that would put a credential on a command line (and into the plan).
TOKEN_FLAGS = ("--api-key", "--hf-token")
# Inputs that are meant to hold a credential, always as a Pulumi secret.
SECRET_FIELDS = {
    "kubernetes:core/v1:Secret": ("data", "stringData"),
    "gcp:secretmanager/secretVersion:SecretVersion": ("secretData",),
    "gcp:vertex/aiEndpointWithModelGardenDeployment:AiEndpointWithModelGardenDeployment": ("modelConfig",),
}


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key in node:
            yield from _strings(node[key], f"{path}.{key}" if path else str(key))
    elif _is_seq(node):
        for i, item in enumerate(node):
            yield from _strings(item, f"{path}[{i}]")


def _validate_no_tokens_in_plain_inputs(args: ResourceValidationArgs, report: Report) -> None:
    what = _describe(args.resource_type, args.name)
    exempt = SECRET_FIELDS.get(args.resource_type, ())
    for key in args.props:
        if key in exempt:
            continue
        for path, value in _strings(args.props[key], key):
            # The token shapes are the shared rules' (rules.looks_like_token); the value is never echoed.
            if rules.looks_like_token(value):
                report(f"{what}: {path} holds a credential-shaped value (a Hugging Face token, Google access "
                       "token or API key) in plain text. Store it in Secret Manager (or as a Pulumi secret) and "
                       "reference it (secretKeyRef / secret env) instead.")
            flag = value.split("=", 1)[0]
            if flag in TOKEN_FLAGS:
                report(f"{what}: {path} passes {flag} on the command line, where the plan and the process list "
                       "show it. Pass the credential through an environment variable from a secret "
                       f"({API_KEY_ENV} for vLLM's API key).")


no_tokens_in_plain_inputs = ResourceValidationPolicy(
    name="no-tokens-in-plain-inputs",
    description="No credential appears in a plain input: no token-shaped value anywhere outside a secret "
                "field, no --api-key or --hf-token on a command line.",
    validate=_validate_no_tokens_in_plain_inputs,
)


POLICIES = [
    no_public_invokers,
    no_plaintext_tokens,
    bucket_access,
    no_authoritative_iam,
    required_labels,
    accelerator_budget,
    prod_cluster_deletion_protection,
    no_unauthenticated_public_endpoints,
    no_tokens_in_plain_inputs,
]
