"""A Vertex AI endpoint serving one open model with the Model Garden vLLM container.

One ``gcp.vertex.AiEndpointWithModelGardenDeployment``: Vertex AI creates the endpoint, uploads
the model (a Hugging Face id plus our container spec) and deploys it on dedicated GPU replicas in
a single ``:deploy`` call. Optional LoRA adapters are read from the model bucket.
"""

from __future__ import annotations

import re
import types
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Optional

import pulumi
import pulumi_gcp as gcp

from components.container import ServingContainer
from components.lora import adapter_path, adapter_source_problem, is_hub_adapter
from components.rules import REGION, bucket_name_problem, hf_model_id_problem

TYPE_TOKEN = "llm-serving:vertex:VllmEndpoint"
# Earlier type tokens of this component: aliases keep deployed endpoints from being replaced.
PREVIOUS_TYPE_TOKENS = ("llm-serving:vertex:VertexVllmEndpoint",)
ADOPTED_TYPE_TOKEN = "llm-serving:vertex:AdoptedEndpoint"

# The metric Vertex AI scales GPU deployments on (the other one is CPU utilization).
DUTY_CYCLE_METRIC = "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle"
# The deploy API caps the container's deployment timeout at two hours.
MAX_DEPLOYMENT_TIMEOUT_SECONDS = 7200
# Environment variable names that look like credentials. The Hugging Face token has its own
# input (`hf_token`), kept secret end to end; container env is plain text.
CREDENTIAL_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "API_KEY")
ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
EMPTY: Mapping[str, Any] = types.MappingProxyType({})

# Which inputs of `AiEndpointWithModelGardenDeployment` the provider updates in place. pulumi-gcp
# 10.2.0 bridges terraform-provider-google-beta v8 (pulumi/pulumi-gcp#3943: "GCP v10.0 ... upgrade-provider
# --major against upstream v8.0.0"); the resource's update there
# (GoogleCloudPlatform/magic-modules mmv1/templates/terraform/custom_update/
# vertex_ai_endpoint_with_model_garden_deployment.go.tmpl) sends exactly these four fields to
# `endpoints.mutateDeployedModel`, the Vertex AI call that changes a deployed model's replicas and
# autoscaling without redeploying it. Every other input still forces a new resource, so the
# component leaves replacement to the provider's schema instead of listing inputs itself.
IN_PLACE_INPUTS = (
    "deployConfig.dedicatedResources.minReplicaCount",
    "deployConfig.dedicatedResources.maxReplicaCount",
    "deployConfig.dedicatedResources.requiredReplicaCount",
    "deployConfig.dedicatedResources.autoscalingMetricSpecs",
)
# `deletionPolicy` exists only in the provider's state: changing it touches nothing in Vertex AI.
PROVIDER_ONLY_INPUTS = ("deletionPolicy",)


def change_kind(input_path: str) -> str:
    """What changing one input (a dotted engine path) does: ``update`` in place or ``replace``."""
    for prefix in IN_PLACE_INPUTS + PROVIDER_ONLY_INPUTS:
        if input_path == prefix or input_path.startswith((prefix + ".", prefix + "[")):
            return "update"
    return "replace"


def change_kinds_text(delete_before_replace: bool) -> tuple[str, str]:
    """The two kinds of change of a managed endpoint, one sentence each, as the plan shows them."""
    replace = ("replace: the old endpoint is undeployed and deleted first, then a new one deployed "
               "(frees the GPU quota; no serving until the new one is healthy, up to an hour; new endpoint id and URLs)"
               if delete_before_replace else
               "replace: a new endpoint is created and deployed first, the old one deleted after it is healthy "
               "(no downtime; needs quota for both; new endpoint id and URLs in the outputs)")
    return (
        "replicas and autoscaling (min/max/required replica count, autoscaling metric target): update in place "
        "(mutateDeployedModel; same endpoint, same URLs)",
        "container (image, command, args, env, ports, routes), model and token, machine, accelerators, spot, "
        "endpoint settings: " + replace,
    )


def _project_number(given: Optional[pulumi.Input[str]], project: Optional[pulumi.Input[str]],
                    parent: pulumi.Resource) -> pulumi.Output[str]:
    """The project number as given, else looked up (the endpoint's resource name and service agents use it)."""
    if given is not None:
        return pulumi.Output.from_input(given)
    return gcp.organizations.get_project_output(project_id=project, opts=pulumi.InvokeOptions(parent=parent)).number


def custom_code_service_agent(project_number: str) -> str:
    """The identity Vertex AI runs custom serving containers as when no service account is set."""
    return f"service-{project_number}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"


@dataclass(frozen=True, kw_only=True)
class VertexClientOutputs:
    """One Vertex AI deployment's entry in the stack's `deployments` export.

    This is the whole contract between the stack and its callers: the program exports exactly
    these keys (``as_dict``) and ``tools.vertex_client`` reads exactly these keys, so a field
    added or renamed here changes both.
    """

    # Which client reads the entry (every platform's entry names its platform).
    platform: str = "vertex"
    # Hugging Face id of the base model.
    model: str
    region: str
    # `projects/<number>/locations/<region>/endpoints/<id>`, and its last segment.
    endpoint_name: pulumi.Input[str]
    endpoint_id: pulumi.Input[str]
    # Whether the URLs use the endpoint's dedicated DNS (the shared host refuses such endpoints).
    dedicated: bool
    # The tutorial's predict request (POST {"instances": [...]}) and the OpenAI-compatible base URL.
    predict_url: pulumi.Input[str]
    openai_base_url: pulumi.Input[str]
    # Cloud Logging query for the endpoint (where a failed deployment explains itself).
    logs_url: pulumi.Input[str]
    # Adapter name -> the `lora_id` to send: `gs://<bucket>/<prefix>` or a Hub repository id.
    lora_adapters: Mapping[str, str]
    # The deployed model's id; None for an endpoint the stack adopted and does not deploy to.
    deployed_model_id: Optional[pulumi.Input[str]]
    # False for an adopted endpoint: the stack neither changes nor deletes it.
    managed: bool
    # What a change to this deployment does to the endpoint, in one sentence.
    replacement: str

    def as_dict(self) -> dict[str, Any]:
        entry = {f.name: getattr(self, f.name) for f in fields(self)}
        entry["lora_adapters"] = dict(self.lora_adapters)
        return entry


def client_output_keys() -> tuple[str, ...]:
    """The keys of a deployment entry that `VertexClientOutputs.as_dict` writes."""
    return tuple(f.name for f in fields(VertexClientOutputs))


@dataclass(frozen=True, kw_only=True)
class VertexVllmEndpointArgs:
    """What to serve, on which hardware, and how Vertex AI reaches the container.

    The caller decides the whole container (image, command, args rendered for the pinned server
    version, environment, port, health and predict routes); this component places it as given
    and never adds flags or variables of its own.
    """

    # Region of the endpoint and its replicas, e.g. `us-central1`.
    region: str
    # Hugging Face model id, e.g. `meta-llama/Llama-3.1-8B-Instruct`.
    hugging_face_model_id: str
    # What runs: image (release tag or digest), command, args, environment (plain text, never
    # credentials; the Model Garden server reads MODEL_ID and DEPLOY_SOURCE from it), port,
    # health path and predict route (both required here).
    container: ServingContainer
    # Vertex AI machine type, e.g. `g2-standard-12`; must be a key of `machine_accelerators`.
    machine_type: str
    # Vertex AI accelerator enum, e.g. `NVIDIA_L4`.
    accelerator_type: str
    # Accelerators per replica.
    accelerator_count: int
    # Catalog data: machine type -> (Vertex accelerator enum, accelerators it carries).
    machine_accelerators: Mapping[str, tuple[str, int]]
    # Project id; default: the provider's project.
    project: Optional[pulumi.Input[str]] = None
    # Project number (for the dedicated DNS and full endpoint names); default: looked up.
    project_number: Optional[pulumi.Input[str]] = None
    # Hugging Face read token for gated models. Always sent as a Pulumi secret, and only in
    # `model_config.hugging_face_access_token`.
    hf_token: Optional[pulumi.Input[str]] = None
    # Accept the model's licence (EULA) on the caller's behalf.
    accept_eula: bool = False
    # Let Vertex AI deploy from its cached copy of the Hugging Face weights.
    hugging_face_cache_enabled: bool
    # /dev/shm for NCCL between GPUs; the tutorial uses 16 GiB.
    shared_memory_size_mb: int
    # How long Vertex AI waits for the container to become healthy (at most 7200).
    deployment_timeout_seconds: int
    min_replicas: int
    max_replicas: int
    # Scale out when the accelerators' duty cycle passes this percentage (1-100).
    duty_cycle_target: int
    # Run the replicas on Spot capacity (can be preempted).
    spot: bool
    # Dedicated endpoint DNS: streaming, 1 h timeout, 10 MB payloads; the shared
    # `{region}-aiplatform.googleapis.com` host then refuses this endpoint.
    dedicated_endpoint: bool
    # Endpoint and model display names; default: the component name.
    display_name: Optional[str] = None
    # The dedicated serving identity. Read access to the LoRA adapters is granted to it, on
    # the bucket only. See the class docstring about which identity the container runs as.
    service_account_email: Optional[pulumi.Input[str]] = None
    # Bucket holding the LoRA adapters (the stack's model bucket), by name.
    lora_bucket: Optional[str] = None
    # Adapter name -> object prefix in `lora_bucket`, e.g. {"support": "loras/support-v3"}.
    lora_adapters: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    # When a change replaces the endpoint (anything but replicas and autoscaling, see IN_PLACE_INPUTS):
    # False: deploy a new endpoint first, delete the old one after (no downtime; needs quota for both;
    # the endpoint id and URLs change). True: undeploy and delete first (frees the GPU quota; downtime).
    delete_before_replace: bool = False

    def problems(self) -> list[str]:
        """Every problem with these Args, each naming the field, the value and the fix."""
        found: list[str] = []
        if not self.region or not REGION.fullmatch(self.region):
            found.append(f"region {self.region!r} is not a Google Cloud region; give one like us-central1")
        if hf_model_id_problem(self.hugging_face_model_id or ""):
            found.append(f"hugging_face_model_id {self.hugging_face_model_id!r} is not a Hugging Face id; "
                         "give one like meta-llama/Llama-3.1-8B-Instruct")
        found += self.container.problems()
        found += self._hardware_problems()
        found += self._container_problems()
        found += self._env_problems()
        found += self._lora_problems()
        if self.min_replicas < 1:
            found.append(f"min_replicas is {self.min_replicas}; Vertex AI keeps at least 1 replica, set 1 or more")
        if self.max_replicas < self.min_replicas:
            found.append(f"max_replicas {self.max_replicas} is below min_replicas "
                         f"{self.min_replicas}; raise it or lower min_replicas")
        if not 1 <= self.duty_cycle_target <= 100:
            found.append(f"duty_cycle_target is {self.duty_cycle_target}; give a percentage from 1 to 100")
        if isinstance(self.hf_token, str) and not self.hf_token.strip():
            found.append("hf_token is empty; leave it unset for public models or give the token")
        return found

    def _hardware_problems(self) -> list[str]:
        carried = self.machine_accelerators.get(self.machine_type)
        if carried is None:
            known = ", ".join(sorted(self.machine_accelerators)) or "none"
            return [f"machine_type {self.machine_type!r} is not in machine_accelerators (known: {known}); "
                    "pick a known machine type or add it to the accelerator catalog"]
        want_type, want_count = carried
        found = []
        if self.accelerator_type != want_type:
            found.append(f"accelerator_type {self.accelerator_type!r} does not fit machine_type {self.machine_type!r}, "
                         f"which carries {want_type}; use accelerator_type {want_type!r} or a machine type built for "
                         f"{self.accelerator_type}")
        if self.accelerator_count != want_count:
            found.append(f"accelerator_count {self.accelerator_count} does not fit machine_type {self.machine_type!r}, "
                         f"which carries {want_count} x {want_type}; set accelerator_count {want_count} or pick the "
                         f"machine type with {self.accelerator_count} accelerators")
        return found

    def _container_problems(self) -> list[str]:
        found = []
        if self.container.predict_route is None:
            found.append("container.predict_route is unset; Vertex AI needs the route predict requests go to, "
                         "e.g. /generate")
        model_id = self.container.env.get("MODEL_ID")
        if model_id is not None and model_id != self.hugging_face_model_id:
            found.append(f"container.env.MODEL_ID is {model_id!r} but hugging_face_model_id is "
                         f"{self.hugging_face_model_id!r}; the server would load another model, make them equal")
        if self.shared_memory_size_mb < 0:
            found.append(f"shared_memory_size_mb is {self.shared_memory_size_mb}; give a size in MB, 0 or more")
        if not 1 <= self.deployment_timeout_seconds <= MAX_DEPLOYMENT_TIMEOUT_SECONDS:
            found.append(f"deployment_timeout_seconds is {self.deployment_timeout_seconds}; Vertex AI accepts "
                         f"1 to {MAX_DEPLOYMENT_TIMEOUT_SECONDS} seconds (2 hours)")
        return found

    def _env_problems(self) -> list[str]:
        found = []
        for name in self.container.env:
            upper = name.upper()
            if any(marker in upper for marker in CREDENTIAL_MARKERS):
                found.append(f"container.env.{name} looks like a credential, and container environment variables are "
                             "stored and shown in plain text; pass the Hugging Face token as hf_token "
                             "(a Pulumi secret) and remove it from the environment")
        return found

    def _lora_problems(self) -> list[str]:
        return _lora_problems(self.lora_adapters, self.lora_bucket, self.service_account_email)


def _lora_problems(adapters: Mapping[str, str], bucket: Optional[str], reader: Optional[pulumi.Input[str]]) -> list[str]:
    found = []
    in_bucket = [name for name, source in adapters.items() if not is_hub_adapter(source)]
    if in_bucket:
        if not bucket:
            found.append(f"lora_adapters ({', '.join(sorted(in_bucket))}) are read from a bucket but lora_bucket is empty; "
                         "name the bucket that holds them")
        elif bucket_name_problem(bucket):
            found.append(f"lora_bucket {bucket!r} is not a bucket name; give the name without gs://")
        if reader is None:
            found.append("lora_adapters are set but service_account_email is empty; give the serving identity "
                         "that needs read access to the adapters")
    for adapter, source in adapters.items():
        if not ADAPTER_NAME.fullmatch(adapter):
            found.append(f"lora_adapters key {adapter!r} must be letters, digits, '.', '_' or '-'")
        problem = adapter_source_problem(source)
        if problem:
            found.append(f"lora_adapters.{adapter}: {problem}")
    return found


class VertexVllmEndpoint(pulumi.ComponentResource):
    """A Vertex AI endpoint with one vLLM deployment, plus read access to its LoRA adapters.

    Changes. Replica counts and the autoscaling target update in place (``IN_PLACE_INPUTS``: the
    provider calls ``mutateDeployedModel``; same endpoint, same URLs). Anything else (image, flags,
    machine, token, display name) replaces the deployment with a **new endpoint id**, so the URLs
    in the outputs change: by default the new endpoint is deployed first and the old one deleted
    after (no downtime, quota for both); with ``delete_before_replace`` the old one goes first,
    which frees its GPU quota but serves nothing until the new deployment is healthy (up to an
    hour for large models). The component sets no ``replace_on_changes``: the provider's schema
    decides what replaces.

    Identity. The deploy API's ``deploy_config`` has no service-account field (only
    ``dedicated_resources``, ``fast_tryout_enabled`` and Google-managed ``system_labels``), so the
    container runs as Vertex AI's Custom Code Service Agent (``custom_code_service_agent()``), not
    as ``service_account_email``. The LoRA read grant goes to ``service_account_email``; pass the
    service agent there until the resource accepts a service account.

    Labels. Neither ``endpoint_config`` nor ``deploy_config`` takes user labels, so this
    component has no ``labels`` Arg; the endpoint and model carry only Google's system labels.

    The Hugging Face token is sent only as ``model_config.hugging_face_access_token`` and
    always as a Pulumi secret; the container environment (MODEL_ID, DEPLOY_SOURCE, ...) is plain
    text and never holds credentials.
    """

    endpoint_name: pulumi.Output[str]
    endpoint_id: pulumi.Output[str]
    region: pulumi.Output[str]
    predict_url: pulumi.Output[str]
    openai_base_url: pulumi.Output[str]
    logs_url: pulumi.Output[str]
    deployed_model_id: pulumi.Output[str]

    def __init__(self, name: str, args: VertexVllmEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        problems = args.problems()
        if problems:
            raise ValueError(f"VertexVllmEndpoint {name}: " + "; ".join(problems))
        super().__init__(TYPE_TOKEN, name, None, pulumi.ResourceOptions.merge(
            pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=old) for old in PREVIOUS_TYPE_TOKENS]), opts))
        display_name = args.display_name or name
        serving = args.container

        # In the container's own order: reordering would replace the deployment, so the caller
        # keeps it stable.
        env: list[gcp.vertex.AiEndpointWithModelGardenDeploymentModelConfigContainerSpecEnvArgsDict] = [
            {"name": key, "value": value} for key, value in serving.env.items()]

        model_config: gcp.vertex.AiEndpointWithModelGardenDeploymentModelConfigArgsDict = {
            "accept_eula": args.accept_eula,
            "hugging_face_cache_enabled": args.hugging_face_cache_enabled,
            "model_display_name": display_name,
            "container_spec": {
                "image_uri": serving.image,
                "commands": list(serving.command),
                "args": list(serving.args),
                "envs": env,
                "ports": [{"container_port": serving.port}],
                "predict_route": serving.predict_route,
                "health_route": serving.health_path,
                # Both are strings in the API: int64 as JSON text and a protobuf Duration.
                "shared_memory_size_mb": str(args.shared_memory_size_mb),
                "deployment_timeout": f"{args.deployment_timeout_seconds}s",
            },
        }
        if args.hf_token is not None:
            model_config["hugging_face_access_token"] = pulumi.Output.secret(args.hf_token)

        self.deployment = gcp.vertex.AiEndpointWithModelGardenDeployment(
            f"{name}-deployment",
            project=args.project,
            location=args.region,
            hugging_face_model_id=args.hugging_face_model_id,
            model_config=model_config,
            deploy_config={
                # No service_account here: the deploy API does not take one (see class docstring).
                "dedicated_resources": {
                    "machine_spec": {
                        "machine_type": args.machine_type,
                        "accelerator_type": args.accelerator_type,
                        "accelerator_count": args.accelerator_count,
                    },
                    "min_replica_count": args.min_replicas,
                    "max_replica_count": args.max_replicas,
                    "autoscaling_metric_specs": [
                        {"metric_name": DUTY_CYCLE_METRIC, "target": args.duty_cycle_target},
                    ],
                    "spot": args.spot,
                },
            },
            endpoint_config={
                "dedicated_endpoint_enabled": args.dedicated_endpoint,
                "endpoint_display_name": display_name,
            },
            opts=pulumi.ResourceOptions(
                parent=self,
                # No replace_on_changes: the provider knows which inputs update in place.
                delete_before_replace=args.delete_before_replace,
                additional_secret_outputs=["modelConfig"],
            ),
        )

        project_number = _project_number(args.project_number, args.project, self)
        # The provider's `endpoint` is the endpoint id (the full name is the resource id); accept
        # a full name too, so the outputs are right whichever form comes back.
        endpoint_id = self.deployment.endpoint.apply(lambda e: e.rsplit("/", 1)[-1])
        endpoint_name = pulumi.Output.all(self.deployment.endpoint, project_number).apply(
            lambda v: v[0] if v[0].startswith("projects/") else _endpoint_name(v[1], args.region, v[0])
        )
        self.lora_grant = _lora_reader(name, self, args.lora_bucket, args.lora_adapters, args.service_account_email)
        self.client = _client_outputs(
            model=args.hugging_face_model_id, region=args.region, dedicated=args.dedicated_endpoint,
            endpoint_id=endpoint_id, endpoint_name=endpoint_name, project_number=project_number,
            project=self.deployment.project, lora_bucket=args.lora_bucket, lora_adapters=args.lora_adapters,
            deployed_model_id=self.deployment.deployed_model_id, managed=True,
            replacement="; ".join(change_kinds_text(args.delete_before_replace)),
        )
        self._set_client_attributes()

        # Plain copy of what was deployed. With a token set, the whole `modelConfig` input is a
        # secret (nested secrets make the top-level property secret), so a plan would hide the
        # container spec; this output keeps changes to it reviewable.
        self.serving_spec: dict[str, Any] = {
            "image_uri": serving.image,
            "command": list(serving.command),
            "args": list(serving.args),
            "env": dict(serving.env),
            "machine": f"{args.machine_type} ({args.accelerator_count} x {args.accelerator_type})",
            "replicas": [args.min_replicas, args.max_replicas],
        }

        self.register_outputs({**self.client.as_dict(), "serving_spec": self.serving_spec})

    def _set_client_attributes(self) -> None:
        client = self.client
        self.endpoint_name = pulumi.Output.from_input(client.endpoint_name)
        self.endpoint_id = pulumi.Output.from_input(client.endpoint_id)
        self.region = pulumi.Output.from_input(client.region)
        self.predict_url = pulumi.Output.from_input(client.predict_url)
        self.openai_base_url = pulumi.Output.from_input(client.openai_base_url)
        self.logs_url = pulumi.Output.from_input(client.logs_url)
        self.deployed_model_id = self.deployment.deployed_model_id
        self.dedicated = client.dedicated
        self.lora_adapters = client.lora_adapters

    def client_outputs(self) -> dict[str, Any]:
        """This deployment's entry in the stack's `deployments` export (the contract of `VertexClientOutputs`)."""
        return self.client.as_dict()


@dataclass(frozen=True, kw_only=True)
class AdoptedVertexEndpointArgs:
    """An endpoint created outside the stack (by hand, as the tutorial does) that callers reach through it.

    ``AiEndpointWithModelGardenDeployment`` does not support ``pulumi import`` (pulumi-gcp 10.2.0,
    "Import: This resource does not support import"), so an existing endpoint cannot become a
    managed ``VertexVllmEndpoint``; it is referenced instead, and only its client outputs and the
    LoRA read grant are the stack's.
    """

    # Numeric endpoint id (the last segment of `projects/<p>/locations/<r>/endpoints/<id>`).
    endpoint_id: str
    region: str
    # Hugging Face id of the model the endpoint serves (exported for callers; not checked live).
    hugging_face_model_id: str
    # Whether the endpoint was created with a dedicated DNS (the tutorial's `use_dedicated_endpoint`).
    dedicated_endpoint: bool
    project: Optional[pulumi.Input[str]] = None
    project_number: Optional[pulumi.Input[str]] = None
    # As in VertexVllmEndpointArgs: the identity that reads the adapters, the bucket, the adapters.
    service_account_email: Optional[pulumi.Input[str]] = None
    lora_bucket: Optional[str] = None
    lora_adapters: Mapping[str, str] = field(default_factory=lambda: EMPTY)

    def problems(self) -> list[str]:
        found = []
        if not self.endpoint_id.isdigit():
            found.append(f"endpoint_id {self.endpoint_id!r} is not a Vertex AI endpoint id; give the number at the "
                         "end of projects/<p>/locations/<r>/endpoints/<id>")
        if not self.region or not REGION.fullmatch(self.region):
            found.append(f"region {self.region!r} is not a Google Cloud region; give one like us-central1")
        found += _lora_problems(self.lora_adapters, self.lora_bucket, self.service_account_email)
        return found


class AdoptedVertexEndpoint(pulumi.ComponentResource):
    """An existing Vertex AI endpoint: its client outputs, and read access to the LoRA adapters.

    Nothing here creates, changes or deletes the endpoint or its deployed model: its container,
    flags, hardware and replicas stay whatever was deployed by hand, and no preview can see
    them. ``pulumi destroy`` removes only the LoRA grant.
    """

    def __init__(self, name: str, args: AdoptedVertexEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        problems = args.problems()
        if problems:
            raise ValueError(f"AdoptedVertexEndpoint {name}: " + "; ".join(problems))
        super().__init__(ADOPTED_TYPE_TOKEN, name, None, opts)
        project_number = _project_number(args.project_number, args.project, self)
        if args.project is not None:
            project = pulumi.Output.from_input(args.project)
        else:
            project = gcp.organizations.get_client_config_output(opts=pulumi.InvokeOptions(parent=self)).project
        endpoint_id = pulumi.Output.from_input(args.endpoint_id)
        self.lora_grant = _lora_reader(name, self, args.lora_bucket, args.lora_adapters, args.service_account_email)
        self.client = _client_outputs(
            model=args.hugging_face_model_id, region=args.region, dedicated=args.dedicated_endpoint,
            endpoint_id=endpoint_id,
            endpoint_name=project_number.apply(lambda number: _endpoint_name(number, args.region, args.endpoint_id)),
            project_number=project_number, project=project, lora_bucket=args.lora_bucket,
            lora_adapters=args.lora_adapters, deployed_model_id=None, managed=False,
            replacement=("adopted, not managed: this stack never changes, replaces or deletes the endpoint; "
                         "its container and hardware are whatever was deployed by hand"),
        )
        self.register_outputs(self.client.as_dict())

    def client_outputs(self) -> dict[str, Any]:
        """This deployment's entry in the stack's `deployments` export (the contract of `VertexClientOutputs`)."""
        return self.client.as_dict()


def _endpoint_name(project_number: str, region: str, endpoint_id: str) -> str:
    return f"projects/{project_number}/locations/{region}/endpoints/{endpoint_id}"


def _client_outputs(*, model: str, region: str, dedicated: bool, endpoint_id: pulumi.Output[str],
                    endpoint_name: pulumi.Output[str], project_number: pulumi.Output[str],
                    project: pulumi.Input[str], lora_bucket: Optional[str], lora_adapters: Mapping[str, str],
                    deployed_model_id: Optional[pulumi.Output[str]], managed: bool,
                    replacement: str) -> VertexClientOutputs:
    host = pulumi.Output.all(endpoint_id, project_number).apply(lambda v: _host(region, dedicated, v[0], v[1]))
    return VertexClientOutputs(
        model=model,
        region=region,
        endpoint_name=endpoint_name,
        endpoint_id=endpoint_id,
        dedicated=dedicated,
        predict_url=pulumi.Output.all(host, endpoint_name).apply(lambda v: f"https://{v[0]}/v1/{v[1]}:predict"),
        openai_base_url=pulumi.Output.all(host, endpoint_name).apply(lambda v: f"https://{v[0]}/v1beta1/{v[1]}"),
        logs_url=pulumi.Output.all(endpoint_id, project).apply(lambda v: _logs_url(v[0], v[1])),
        lora_adapters={adapter: adapter_path(lora_bucket, source) for adapter, source in sorted(lora_adapters.items())},
        deployed_model_id=deployed_model_id,
        managed=managed,
        replacement=replacement,
    )


def _lora_reader(name: str, parent: pulumi.Resource, bucket: Optional[str], adapters: Mapping[str, str],
                 reader: Optional[pulumi.Input[str]]) -> Optional[gcp.storage.BucketIAMMember]:
    """Read access for the serving identity on the bucket that holds adapters (none for Hub adapters)."""
    if not any(not is_hub_adapter(source) for source in adapters.values()):
        return None
    return gcp.storage.BucketIAMMember(
        f"{name}-lora-reader",
        bucket=bucket,
        role="roles/storage.objectViewer",
        member=pulumi.Output.from_input(reader).apply(lambda e: f"serviceAccount:{e}"),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _host(region: str, dedicated: bool, endpoint_id: str, project_number: str) -> str:
    if dedicated:
        # Endpoint.dedicatedEndpointDns; the provider does not export it, so it is built here.
        return f"{endpoint_id}.{region}-{project_number}.prediction.vertexai.goog"
    return f"{region}-aiplatform.googleapis.com"


def _logs_url(endpoint_id: str, project: str) -> str:
    query = f'resource.type="aiplatform.googleapis.com/Endpoint"\nresource.labels.endpoint_id="{endpoint_id}"'
    return ("https://console.cloud.google.com/logs/query;query="
            + urllib.parse.quote(query, safe="") + "?project=" + urllib.parse.quote(project, safe=""))
