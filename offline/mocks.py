"""Pulumi's mock engine, answering like Google Cloud would, for the offline plan and the tests.

``new_resource`` echoes a resource's inputs and adds the outputs the cloud would compute
(service-account emails, bucket URLs, service URIs, cluster endpoints...), so the program's
``apply`` chains and stack outputs run exactly as in a real deployment. ``call`` answers the
data sources the program reads at preview (project number, accelerator quota, secret value
for an existing secret).

The monitor records every registration with its inputs as the program sent them, secrets
still wrapped where they sit (a token inside a map masks the token, not the map), so the plan
can print them as ``[secret]``, and the resource options that change how the engine treats the
resource (protect, delete-before-replace, replace-on-changes, ignore-changes, aliases).

Every value this module makes up (project number, URLs, digests, ids) is remembered in
``CloudMocks.invented``, so the plan can mark it as invented rather than present it as read
from the cloud; quota is not made up at all unless a test sets it ("not read offline").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from stacks.compose import QUOTA_NOT_READ_OFFLINE

SECRET_SIG_KEY = rpc._special_sig_key  # the wire format's marker for special values
SECRET_SIG = rpc._special_secret_sig

MOCK_PROJECT_NUMBER = "123456789012"
INVENTED_MARK = "(invented offline)"


def is_wrapped_secret(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def mask_secrets(value: Any) -> Any:
    """Replace every secret in a value as the mock engine sees it with the text ``[secret]``."""
    if is_wrapped_secret(value):
        return "[secret]"
    if isinstance(value, Mapping):
        return {k: mask_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    return value


def unwrap_secrets(value: Any) -> Any:
    if is_wrapped_secret(value):
        return unwrap_secrets(value.get("value"))
    if isinstance(value, Mapping):
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [unwrap_secrets(v) for v in value]
    return value


def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


# Outputs the cloud computes, per resource type: (name, inputs, project, region) -> extra state.
Computed = Callable[[str, dict, str, str], dict]


def _service_account(name: str, inputs: dict, project: str, region: str) -> dict:
    email = f"{inputs.get('accountId', name)}@{inputs.get('project', project)}.iam.gserviceaccount.com"
    return {"email": email, "member": f"serviceAccount:{email}", "name": f"projects/{project}/serviceAccounts/{email}",
            "uniqueId": str(int(_digest(email)[:12], 16))}


def _bucket(name: str, inputs: dict, project: str, region: str) -> dict:
    bucket = inputs.get("name", name)
    return {"url": f"gs://{bucket}", "selfLink": f"https://www.googleapis.com/storage/v1/b/{bucket}",
            "projectNumber": MOCK_PROJECT_NUMBER}


def _secret(name: str, inputs: dict, project: str, region: str) -> dict:
    # The provider's id is projects/{{project}}/secrets/{{secret_id}} (pulumi-gcp Secret, Import).
    secret_id = inputs.get("secretId", name)
    return {"name": f"projects/{MOCK_PROJECT_NUMBER}/secrets/{secret_id}",
            "id": f"projects/{inputs.get('project', project)}/secrets/{secret_id}"}


def _secret_version(name: str, inputs: dict, project: str, region: str) -> dict:
    return {"name": f"{inputs.get('secret', 'projects/x/secrets/x')}/versions/1", "version": "1"}


def _repository(name: str, inputs: dict, project: str, region: str) -> dict:
    location = inputs.get("location", region)
    repo = inputs.get("repositoryId", name)
    return {"name": f"projects/{inputs.get('project', project)}/locations/{location}/repositories/{repo}",
            "registryUri": f"{location}-docker.pkg.dev/{inputs.get('project', project)}/{repo}"}


def _cloud_run_service(name: str, inputs: dict, project: str, region: str) -> dict:
    service = inputs.get("name", name)
    uri = f"https://{service}-{MOCK_PROJECT_NUMBER[:10]}.{inputs.get('location', region)}.run.app"
    return {"uri": uri, "urls": [uri], "latestReadyRevision": f"{service}-00001-abc"}


def _vertex_deployment(name: str, inputs: dict, project: str, region: str) -> dict:
    endpoint_id = str(int(_digest(name)[:15], 16))[:19]
    # Like the provider: `endpoint` is the bare id; the resource id is the full name.
    return {"endpoint": endpoint_id,
            "deployedModelId": str(int(_digest(name, "model")[:12], 16)),
            "deployedModelDisplayName": name}


def _cluster(name: str, inputs: dict, project: str, region: str) -> dict:
    # A syntactically valid (not real) base64 CA, so kubeconfig rendering runs as in a deployment.
    return {"endpoint": "203.0.113.10",
            "masterAuth": {"clusterCaCertificate": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1PQ0sKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=",
                           "clientCertificateConfig": {"issueClientCertificate": False}},
            "selfLink": (f"https://container.googleapis.com/v1/projects/{project}"
                         f"/locations/{inputs.get('location', region)}/clusters/{inputs.get('name', name)}"),
            "masterVersion": inputs.get("minMasterVersion", "1.33.5-gke.1000000")}


def _dashboard(name: str, inputs: dict, project: str, region: str) -> dict:
    return {"id": f"projects/{MOCK_PROJECT_NUMBER}/dashboards/{_digest(name)[:32]}"}


def _alert_policy(name: str, inputs: dict, project: str, region: str) -> dict:
    return {"name": f"projects/{inputs.get('project', project)}/alertPolicies/{int(_digest(name)[:15], 16)}"}


def _notification_channel(name: str, inputs: dict, project: str, region: str) -> dict:
    return {"name": f"projects/{inputs.get('project', project)}/notificationChannels/{int(_digest(name)[:15], 16)}"}


def _command(name: str, inputs: dict, project: str, region: str) -> dict:
    # A build step's stdout: the digest the image would get, stable for the same inputs.
    triggers = repr(inputs.get("triggers")) + repr(inputs.get("environment"))
    return {"stdout": "sha256:" + _digest(name, triggers), "stderr": ""}


# Which computed outputs are made up here (not derivable from the inputs as the cloud derives them).
INVENTED_OUTPUTS: dict[str, tuple[str, ...]] = {
    "gcp:serviceaccount/account:Account": ("uniqueId",),
    "gcp:storage/bucket:Bucket": ("projectNumber",),
    "gcp:cloudrunv2/service:Service": ("uri", "urls", "latestReadyRevision"),
    "gcp:vertex/aiEndpointWithModelGardenDeployment:AiEndpointWithModelGardenDeployment": ("endpoint", "deployedModelId"),
    "gcp:container/cluster:Cluster": ("endpoint", "masterAuth"),
    "command:local:Command": ("stdout",),
}
# Shorter strings could match real text by chance.
_MIN_INVENTED_LENGTH = 6


def _leaf_strings(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _leaf_strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _leaf_strings(v)]
    return [value] if isinstance(value, str) else []


def _random_password(name: str, inputs: dict, project: str, region: str) -> dict:
    # Stable per resource name, never a real key; long enough to look like one.
    return {"result": _digest("random-password", name)[: int(inputs.get("length", 32))]}


COMPUTED: dict[str, Computed] = {
    "random:index/randomPassword:RandomPassword": _random_password,
    "gcp:serviceaccount/account:Account": _service_account,
    "gcp:storage/bucket:Bucket": _bucket,
    "gcp:secretmanager/secret:Secret": _secret,
    "gcp:secretmanager/secretVersion:SecretVersion": _secret_version,
    "gcp:artifactregistry/repository:Repository": _repository,
    "gcp:cloudrunv2/service:Service": _cloud_run_service,
    "gcp:vertex/aiEndpointWithModelGardenDeployment:AiEndpointWithModelGardenDeployment": _vertex_deployment,
    "gcp:container/cluster:Cluster": _cluster,
    "gcp:monitoring/dashboard:Dashboard": _dashboard,
    "gcp:monitoring/alertPolicy:AlertPolicy": _alert_policy,
    "gcp:monitoring/notificationChannel:NotificationChannel": _notification_channel,
    "command:local:Command": _command,
}


@dataclass
class QuotaAnswer:
    """What the mock Cloud Quotas API reports for a quota id (None = unreadable)."""

    value: int | None


@dataclass
class CloudMocks(pulumi.runtime.Mocks):
    """Answers resource registrations and data-source calls like Google Cloud."""

    project: str = "mock-project"
    region: str = "us-central1"
    # Accelerator quota per quota id; ids not listed answer with `default_quota`, and with no
    # default the read fails as "not read offline" (a made-up number would read as a fact).
    quotas: dict[str, QuotaAnswer] = field(default_factory=dict)
    default_quota: int | None = None
    secret_payload: str = "offline-placeholder-secret"
    calls: list[tuple[str, dict]] = field(default_factory=list)
    # Every value made up here (or a distinctive part of it): anything that contains one is invented.
    invented: set[str] = field(default_factory=lambda: {MOCK_PROJECT_NUMBER, MOCK_PROJECT_NUMBER[:10]})

    def _invent(self, *values: Any) -> None:
        self.invented.update(s for s in _leaf_strings(list(values)) if len(s) >= _MIN_INVENTED_LENGTH)

    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        inputs = dict(args.inputs)
        plain = unwrap_secrets(inputs)
        state = dict(inputs)
        computed = COMPUTED.get(args.typ)
        if computed:
            extra = computed(args.name, plain, self.project, self.region)
            state.update(extra)
            self._invent(*(extra[key] for key in INVENTED_OUTPUTS.get(args.typ, ()) if key in extra))
            if args.typ == "gcp:container/cluster:Cluster" and "minMasterVersion" not in plain:
                self._invent(extra["masterVersion"])
        if "project" not in state and args.typ.startswith("gcp:"):
            state["project"] = self.project
        # A computed "id" is the provider's resource id (e.g. a dashboard's projects/<n>/dashboards/<id>).
        resource_id = args.resource_id or state.pop("id", None) or f"{args.name}-id"
        return resource_id, state

    def call(self, args: pulumi_mocks.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        token = args.token
        if token == "gcp:organizations/getProject:getProject":
            project = args.args.get("projectId") or self.project
            return {"projectId": project, "number": MOCK_PROJECT_NUMBER, "name": project, "id": f"projects/{project}"}
        if token == "gcp:organizations/getClientConfig:getClientConfig":
            self._invent("offline-placeholder-token")
            return {"project": self.project, "region": self.region, "accessToken": "offline-placeholder-token", "id": "client"}
        if token.startswith("gcp:cloudquota/getSQuotaInfo:"):
            quota_id = args.args.get("quotaId", "")
            if quota_id not in self.quotas and self.default_quota is None:
                return {}, [("quotaId", f"{QUOTA_NOT_READ_OFFLINE}: the mock engine knows no real quota")]
            answer = self.quotas.get(quota_id, QuotaAnswer(self.default_quota))
            if answer.value is None:
                # As the API answers a quota with no value for this region.
                return {"quotaId": quota_id, "service": args.args.get("service"), "dimensionsInfos": []}
            return {
                "quotaId": quota_id,
                "service": args.args.get("service"),
                "parent": args.args.get("parent"),
                "dimensionsInfos": [{"dimensions": {"region": self.region}, "applicableLocations": [self.region],
                                     "details": [{"value": str(answer.value)}]}],
                "isPrecise": True,
            }
        if token == "gcp:secretmanager/getSecretVersionAccess:getSecretVersionAccess":
            return {"secretData": self.secret_payload, "secret": args.args.get("secret"), "version": "latest",
                    "name": f"{args.args.get('secret')}/versions/latest"}
        if token == "gcp:container/getEngineVersions:getEngineVersions":
            self._invent("1.33.5-gke.1000000")
            return {"latestMasterVersion": "1.33.5-gke.1000000", "validMasterVersions": ["1.33.5-gke.1000000"],
                    "defaultClusterVersion": "1.33.5-gke.1000000", "releaseChannelDefaultVersion": {}}
        return {}


@dataclass(frozen=True)
class AliasRecord:
    """One alias a registration declared, as the engine receives it: a whole URN, or a spec
    whose empty fields mean "the same as now"."""

    urn: str = ""
    name: str = ""
    type: str = ""
    parent_urn: str = ""
    no_parent: bool = False


@dataclass(frozen=True)
class Registration:
    """One resource as the program registered it."""

    type: str
    name: str
    urn: str
    parent: str  # parent URN; "" for children of the stack
    inputs: Mapping[str, Any]  # wire (camelCase) inputs, secrets still wrapped
    custom: bool
    provider: str
    dependencies: tuple[str, ...]
    aliases: tuple[AliasRecord, ...] = ()
    # Options set on the resource, by Pulumi's name for them; options left at their default are absent.
    options: Mapping[str, Any] = field(default_factory=dict)


def _alias_records(request) -> tuple[AliasRecord, ...]:
    records = []
    for alias in request.aliases:
        if alias.HasField("spec"):
            spec = alias.spec
            records.append(AliasRecord(name=spec.name, type=spec.type, parent_urn=spec.parentUrn,
                                       no_parent=spec.noParent))
        else:
            records.append(AliasRecord(urn=alias.urn))
    return tuple(records)


def wire_inputs(struct: Any) -> dict[str, Any]:
    """A registration's inputs from the wire, secrets left wrapped where they are.

    ``rpc.deserialize_properties`` lifts a nested secret to its whole enclosing map or list (a
    token inside ``modelConfig`` would hide the container spec); the engine keeps it in place."""
    return _keep_secrets_in_place(json_format.MessageToDict(struct))


def _keep_secrets_in_place(value: Any) -> Any:
    if is_wrapped_secret(value):
        return {SECRET_SIG_KEY: SECRET_SIG, "value": _keep_secrets_in_place(value.get("value"))}
    if isinstance(value, Mapping):
        return {k: _keep_secrets_in_place(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keep_secrets_in_place(v) for v in value]
    return value


def resource_options(request: Any) -> dict[str, Any]:
    """The resource options of a RegisterResourceRequest that differ from the defaults."""
    options: dict[str, Any] = {}
    if request.protect:
        options["protect"] = True
    if request.deleteBeforeReplace:
        options["deleteBeforeReplace"] = True
    if request.retainOnDelete:
        options["retainOnDelete"] = True
    for name in ("replaceOnChanges", "ignoreChanges"):
        values = list(getattr(request, name))
        if values:
            options[name] = values
    aliases = [json_format.MessageToDict(alias) for alias in request.aliases] + list(request.aliasURNs)
    if aliases:
        options["aliases"] = aliases
    if request.deletedWith:
        options["deletedWith"] = request.deletedWith
    return options


def _is_root_stack(urn: str) -> bool:
    """Is this URN the root stack itself (not merely something under it)?"""
    if not urn:
        return True
    qualified_type = urn.split("::")[2]
    return qualified_type.split("$")[-1] == "pulumi:pulumi:Stack"


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The stock mock monitor, also remembering each registration's parent, raw inputs and aliases."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = wire_inputs(request.object)
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent="" if _is_root_stack(request.parent) else request.parent,
                    inputs=inputs,
                    custom=bool(request.custom),
                    provider=request.provider,
                    dependencies=tuple(request.dependencies),
                    aliases=_alias_records(request),
                    options=resource_options(request),
                )
            )
        return response
