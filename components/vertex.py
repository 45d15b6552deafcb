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
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_gcp as gcp

from components.container import ServingContainer
from components.rules import REGION, bucket_name_problem, hf_model_id_problem

TYPE_TOKEN = "llm-serving:vertex:VllmEndpoint"
# Earlier type tokens of this component: aliases keep deployed endpoints from being replaced.
PREVIOUS_TYPE_TOKENS = ("llm-serving:vertex:VertexVllmEndpoint",)

# The metric Vertex AI scales GPU deployments on (the other one is CPU utilization).
DUTY_CYCLE_METRIC = "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle"
# The deploy API caps the container's deployment timeout at two hours.
MAX_DEPLOYMENT_TIMEOUT_SECONDS = 7200
# Environment variable names that look like credentials. The Hugging Face token has its own
# input (`hf_token`), kept secret end to end; container env is plain text.
CREDENTIAL_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "API_KEY")
ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
EMPTY: Mapping[str, Any] = types.MappingProxyType({})

# Input property names of the resource as the engine sees them. Every one is ForceNew in the
# provider; `deletionPolicy` (provider-side only) is the one field that updates in place.
_IMMUTABLE_INPUTS = [
    "location", "project", "huggingFaceModelId", "publisherModelName",
    "modelConfig", "deployConfig", "endpointConfig",
]


def custom_code_service_agent(project_number: str) -> str:
    """The identity Vertex AI runs custom serving containers as when no service account is set."""
    return f"service-{project_number}@gcp-sa-aiplatform-cc.iam.gserviceaccount.com"


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
    # True: undeploy and delete first, then deploy (frees the GPU quota; downtime).
    # False: deploy a second endpoint first (needs twice the quota; the endpoint id changes).
    delete_before_replace: bool = True

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
        found = []
        if self.lora_adapters:
            if not self.lora_bucket:
                found.append("lora_adapters are set but lora_bucket is empty; name the bucket that holds them")
            elif bucket_name_problem(self.lora_bucket):
                found.append(f"lora_bucket {self.lora_bucket!r} is not a bucket name; give the name without gs://")
            if self.service_account_email is None:
                found.append("lora_adapters are set but service_account_email is empty; give the serving identity "
                             "that needs read access to the adapters")
            for adapter, prefix in self.lora_adapters.items():
                if not ADAPTER_NAME.fullmatch(adapter):
                    found.append(f"lora_adapters key {adapter!r} must be letters, digits, '.', '_' or '-'")
                if not prefix or prefix.startswith(("/", "gs://")):
                    found.append(f"lora_adapters.{adapter} is {prefix!r}; give the object prefix inside lora_bucket, "
                                 "e.g. loras/support-v3")
        return found


class VertexVllmEndpoint(pulumi.ComponentResource):
    """A Vertex AI endpoint with one vLLM deployment, plus read access to its LoRA adapters.

    Changes replace the deployment. The provider marks every input of
    ``AiEndpointWithModelGardenDeployment`` ForceNew (no update call exists), so changing anything
    (image, flags, machine, replicas, token, display name) undeploys the model, deletes the
    endpoint and deploys a new one with a **new endpoint id**: URLs in the stack outputs change,
    and with ``delete_before_replace`` (the default, so the GPU quota is free for the new
    replicas) the model is unavailable until the new deployment is healthy, which takes up to an
    hour for large models. With ``delete_before_replace=False`` the new endpoint comes up first,
    which needs quota for both.

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
        self.dedicated = args.dedicated_endpoint
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
                replace_on_changes=_IMMUTABLE_INPUTS,
                delete_before_replace=args.delete_before_replace,
                additional_secret_outputs=["modelConfig"],
            ),
        )

        if args.project_number is not None:
            project_number = pulumi.Output.from_input(args.project_number)
        else:
            project_number = gcp.organizations.get_project_output(
                project_id=args.project, opts=pulumi.InvokeOptions(parent=self)
            ).number
        region = args.region
        dedicated = args.dedicated_endpoint

        # The provider's `endpoint` is the endpoint id (the full name is the resource id); accept
        # a full name too, so the outputs are right whichever form comes back.
        self.endpoint_id = self.deployment.endpoint.apply(lambda e: e.rsplit("/", 1)[-1])
        self.endpoint_name = pulumi.Output.all(self.deployment.endpoint, project_number).apply(
            lambda v: v[0] if v[0].startswith("projects/") else f"projects/{v[1]}/locations/{region}/endpoints/{v[0]}"
        )
        host = pulumi.Output.all(self.endpoint_id, project_number).apply(
            lambda v: _host(region, dedicated, v[0], v[1])
        )
        self.region = pulumi.Output.from_input(region)
        self.predict_url = pulumi.Output.all(host, self.endpoint_name).apply(lambda v: f"https://{v[0]}/v1/{v[1]}:predict")
        self.openai_base_url = pulumi.Output.all(host, self.endpoint_name).apply(lambda v: f"https://{v[0]}/v1beta1/{v[1]}")
        self.logs_url = pulumi.Output.all(self.endpoint_id, self.deployment.project).apply(lambda v: _logs_url(v[0], v[1]))
        self.deployed_model_id = self.deployment.deployed_model_id

        self.lora_grant: Optional[gcp.storage.BucketIAMMember] = None
        if args.lora_adapters:
            self.lora_grant = gcp.storage.BucketIAMMember(
                f"{name}-lora-reader",
                bucket=args.lora_bucket,
                role="roles/storage.objectViewer",
                member=pulumi.Output.from_input(args.service_account_email).apply(lambda e: f"serviceAccount:{e}"),
                opts=pulumi.ResourceOptions(parent=self),
            )
        bucket = args.lora_bucket
        self.lora_adapters: Mapping[str, str] = {
            adapter: f"gs://{bucket}/{prefix.rstrip('/')}" for adapter, prefix in sorted(args.lora_adapters.items())
        }

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

        self.register_outputs({
            "endpoint_name": self.endpoint_name,
            "endpoint_id": self.endpoint_id,
            "region": self.region,
            "predict_url": self.predict_url,
            "openai_base_url": self.openai_base_url,
            "logs_url": self.logs_url,
            "deployed_model_id": self.deployed_model_id,
            "dedicated": self.dedicated,
            "lora_adapters": dict(self.lora_adapters),
            "serving_spec": self.serving_spec,
        })

    def client_outputs(self) -> dict[str, Any]:
        """This deployment's entry in the stack's `deployments` export (read by tools.vertex_client)."""
        return {
            "platform": "vertex",
            "predict_url": self.predict_url,
            "openai_base_url": self.openai_base_url,
            "endpoint_name": self.endpoint_name,
            "endpoint_id": self.endpoint_id,
            "region": self.region,
            "dedicated": self.dedicated,
            "logs_url": self.logs_url,
            "deployed_model_id": self.deployed_model_id,
            "lora_adapters": dict(self.lora_adapters),
        }


def _host(region: str, dedicated: bool, endpoint_id: str, project_number: str) -> str:
    if dedicated:
        # Endpoint.dedicatedEndpointDns; the provider does not export it, so it is built here.
        return f"{endpoint_id}.{region}-{project_number}.prediction.vertexai.goog"
    return f"{region}-aiplatform.googleapis.com"


def _logs_url(endpoint_id: str, project: str) -> str:
    query = f'resource.type="aiplatform.googleapis.com/Endpoint"\nresource.labels.endpoint_id="{endpoint_id}"'
    return ("https://console.cloud.google.com/logs/query;query="
            + urllib.parse.quote(query, safe="") + "?project=" + urllib.parse.quote(project, safe=""))
