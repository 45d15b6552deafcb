"""A Vertex AI endpoint serving one open model with the Model Garden vLLM container.

One ``gcp.vertex.AiEndpointWithModelGardenDeployment``: Vertex AI creates the endpoint, uploads
the model (a Hugging Face id plus our container spec) and deploys it on dedicated GPU replicas in
a single ``:deploy`` call. Optional LoRA adapters are read from the model bucket.
"""

from __future__ import annotations

import re
import types
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_gcp as gcp

from components.images import pinned_image_problem

# The metric Vertex AI scales GPU deployments on (the other one is CPU utilization).
DUTY_CYCLE_METRIC = "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle"
# The deploy API caps the container's deployment timeout at two hours.
MAX_DEPLOYMENT_TIMEOUT_SECONDS = 7200
# Environment variable names that look like credentials. The Hugging Face token has its own
# field (`hugging_face_access_token`), kept secret end to end; container env is plain text.
CREDENTIAL_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "API_KEY")
# Set by the component itself from other Args.
RESERVED_ENV = ("MODEL_ID", "DEPLOY_SOURCE")
HF_MODEL_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
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


@dataclass(frozen=True)
class VertexVllmEndpointArgs:
    """What to serve, on which hardware, and how Vertex AI reaches the container.

    The container command and arguments are rendered by the caller for the pinned server
    version; this component checks them against the rest of the Args (port, host, tensor
    parallelism, LoRA) but never adds flags of its own.
    """

    # Region of the endpoint and its replicas, e.g. `us-central1`.
    region: str
    # Hugging Face model id, e.g. `meta-llama/Llama-3.1-8B-Instruct`; also the container's MODEL_ID.
    hugging_face_model_id: str
    # Serving image with a release tag or digest (never `:latest` or untagged).
    image_uri: str
    # Container entrypoint, e.g. ["python", "-m", "vllm.entrypoints.api_server"].
    container_command: Sequence[str]
    # Server flags, e.g. ["--host=0.0.0.0", "--port=8080", "--model=...", "--tensor-parallel-size=1"].
    container_args: Sequence[str]
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
    hugging_face_access_token: Optional[pulumi.Input[str]] = None
    # Accept the model's licence (EULA) on the caller's behalf.
    accept_eula: bool = False
    # Let Vertex AI deploy from its cached copy of the Hugging Face weights.
    hugging_face_cache_enabled: bool = False
    # DEPLOY_SOURCE in the container's environment (tracking only).
    deploy_source: str = "pulumi"
    # More plain-text environment variables; never credentials (names with TOKEN, SECRET, ...).
    extra_env: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    # The container's serving port (the first and only `ports` entry).
    container_port: int = 8080
    predict_route: str = "/generate"
    health_route: str = "/ping"
    # /dev/shm for NCCL between GPUs; the seed uses 16 GiB.
    shared_memory_size_mb: int = 16 * 1024
    # How long Vertex AI waits for the container to become healthy (at most 7200).
    deployment_timeout_seconds: int = MAX_DEPLOYMENT_TIMEOUT_SECONDS
    min_replica_count: int = 1
    max_replica_count: int = 1
    # Scale out when the accelerators' duty cycle passes this percentage (1-100).
    duty_cycle_target: int = 60
    # Run the replicas on Spot capacity (can be preempted).
    spot: bool = False
    # Dedicated endpoint DNS: streaming, 1 h timeout, 10 MB payloads; the shared
    # `{region}-aiplatform.googleapis.com` host then refuses this endpoint.
    dedicated_endpoint: bool = True
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
        if not self.region or not re.fullmatch(r"[a-z]+-[a-z]+\d+", self.region):
            found.append(f"region {self.region!r} is not a Google Cloud region; give one like us-central1")
        if not HF_MODEL_ID.fullmatch(self.hugging_face_model_id or ""):
            found.append(f"hugging_face_model_id {self.hugging_face_model_id!r} is not a Hugging Face id; "
                         "give one like meta-llama/Llama-3.1-8B-Instruct")
        found += _image_problems(self.image_uri)
        found += self._hardware_problems()
        found += self._container_problems()
        found += self._env_problems()
        found += self._lora_problems()
        if self.min_replica_count < 1:
            found.append(f"min_replica_count is {self.min_replica_count}; Vertex AI keeps at least 1 replica, set 1 or more")
        if self.max_replica_count < self.min_replica_count:
            found.append(f"max_replica_count {self.max_replica_count} is below min_replica_count "
                         f"{self.min_replica_count}; raise it or lower min_replica_count")
        if not 1 <= self.duty_cycle_target <= 100:
            found.append(f"duty_cycle_target is {self.duty_cycle_target}; give a percentage from 1 to 100")
        if isinstance(self.hugging_face_access_token, str) and not self.hugging_face_access_token.strip():
            found.append("hugging_face_access_token is empty; leave it unset for public models or give the token")
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
        if not self.container_command:
            found.append("container_command is empty; give the server entrypoint, e.g. "
                         "['python', '-m', 'vllm.entrypoints.api_server']")
        for name, values in (("container_command", self.container_command), ("container_args", self.container_args)):
            bad = [v for v in values if not isinstance(v, str)]
            if bad:
                found.append(f"{name} holds non-text values {bad!r}; render every entry as a plain string")
        if not 1 <= self.container_port <= 65535:
            found.append(f"container_port is {self.container_port}; give a port from 1 to 65535")
        flags = _flags(self.container_args)
        port = flags.get("--port")
        if port is not None and port != str(self.container_port):
            found.append(f"container_args set --port={port} but container_port is {self.container_port}; "
                         "Vertex AI only sends traffic to container_port, make them equal")
        host = flags.get("--host")
        if host is not None and host != "0.0.0.0":
            found.append(f"container_args set --host={host}; Vertex AI reaches the container on its pod IP, "
                         "use --host=0.0.0.0")
        tp = flags.get("--tensor-parallel-size")
        if tp is not None and (not tp.isdigit() or int(tp) > self.accelerator_count):
            found.append(f"container_args set --tensor-parallel-size={tp} but each replica has "
                         f"{self.accelerator_count} accelerator(s); use at most {self.accelerator_count}")
        for name, route in (("predict_route", self.predict_route), ("health_route", self.health_route)):
            if not route.startswith("/"):
                found.append(f"{name} {route!r} must be a path starting with /, e.g. /generate or /ping")
        if self.shared_memory_size_mb < 0:
            found.append(f"shared_memory_size_mb is {self.shared_memory_size_mb}; give a size in MB, 0 or more")
        if not 1 <= self.deployment_timeout_seconds <= MAX_DEPLOYMENT_TIMEOUT_SECONDS:
            found.append(f"deployment_timeout_seconds is {self.deployment_timeout_seconds}; Vertex AI accepts "
                         f"1 to {MAX_DEPLOYMENT_TIMEOUT_SECONDS} seconds (2 hours)")
        return found

    def _env_problems(self) -> list[str]:
        found = []
        for name, value in self.extra_env.items():
            if not ENV_NAME.fullmatch(name):
                found.append(f"extra_env name {name!r} is not a valid variable name; use letters, digits and _")
            upper = name.upper()
            if any(marker in upper for marker in CREDENTIAL_MARKERS):
                found.append(f"extra_env {name} looks like a credential, and container environment variables are "
                             "stored and shown in plain text; pass the Hugging Face token as "
                             "hugging_face_access_token (a Pulumi secret) and remove it from extra_env")
            if upper in RESERVED_ENV:
                found.append(f"extra_env {name} is set by the component; use "
                             f"{'hugging_face_model_id' if upper == 'MODEL_ID' else 'deploy_source'} instead")
            if not isinstance(value, str):
                found.append(f"extra_env {name} is {type(value).__name__}; container environment values must be "
                             "plain strings (no Outputs or secrets)")
        return found

    def _lora_problems(self) -> list[str]:
        found = []
        enabled = "--enable-lora" in _flags(self.container_args)
        if self.lora_adapters:
            if not self.lora_bucket:
                found.append("lora_adapters are set but lora_bucket is empty; name the bucket that holds them")
            elif not BUCKET_NAME.fullmatch(self.lora_bucket):
                found.append(f"lora_bucket {self.lora_bucket!r} is not a bucket name; give the name without gs://")
            if self.service_account_email is None:
                found.append("lora_adapters are set but service_account_email is empty; give the serving identity "
                             "that needs read access to the adapters")
            if not enabled:
                found.append("lora_adapters are set but container_args lack --enable-lora; the server would refuse "
                             "every lora_id, add --enable-lora")
            for adapter, prefix in self.lora_adapters.items():
                if not ADAPTER_NAME.fullmatch(adapter):
                    found.append(f"lora_adapters key {adapter!r} must be letters, digits, '.', '_' or '-'")
                if not prefix or prefix.startswith(("/", "gs://")):
                    found.append(f"lora_adapters.{adapter} is {prefix!r}; give the object prefix inside lora_bucket, "
                                 "e.g. loras/support-v3")
        elif enabled:
            found.append("container_args have --enable-lora but no lora_adapters are configured; LoRA support costs "
                         "throughput even when unused, remove --enable-lora or configure lora_adapters")
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
    always as a Pulumi secret; the container environment holds MODEL_ID, DEPLOY_SOURCE and
    ``extra_env``, all plain text and never credentials.
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
        super().__init__("llm-serving:vertex:VertexVllmEndpoint", name, None, opts)
        display_name = args.display_name or name
        self.dedicated = args.dedicated_endpoint

        env = [{"name": "MODEL_ID", "value": args.hugging_face_model_id},
               {"name": "DEPLOY_SOURCE", "value": args.deploy_source}]
        # Sorted, so reordering a mapping never replaces the deployment.
        env += [{"name": key, "value": args.extra_env[key]} for key in sorted(args.extra_env)]

        model_config: dict[str, Any] = {
            "accept_eula": args.accept_eula,
            "hugging_face_cache_enabled": args.hugging_face_cache_enabled,
            "model_display_name": display_name,
            "container_spec": {
                "image_uri": args.image_uri,
                "commands": list(args.container_command),
                "args": list(args.container_args),
                "envs": env,
                "ports": [{"container_port": args.container_port}],
                "predict_route": args.predict_route,
                "health_route": args.health_route,
                # Both are strings in the API: int64 as JSON text and a protobuf Duration.
                "shared_memory_size_mb": str(args.shared_memory_size_mb),
                "deployment_timeout": f"{args.deployment_timeout_seconds}s",
            },
        }
        if args.hugging_face_access_token is not None:
            model_config["hugging_face_access_token"] = pulumi.Output.secret(args.hugging_face_access_token)

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
                    "min_replica_count": args.min_replica_count,
                    "max_replica_count": args.max_replica_count,
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
            "image_uri": args.image_uri,
            "command": list(args.container_command),
            "args": list(args.container_args),
            "env": {item["name"]: item["value"] for item in env},
            "machine": f"{args.machine_type} ({args.accelerator_count} x {args.accelerator_type})",
            "replicas": [args.min_replica_count, args.max_replica_count],
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


def _image_problems(image: str) -> list[str]:
    problem = pinned_image_problem(image)
    return [f"image_uri {problem}"] if problem else []


def _flags(args: Sequence[str]) -> dict[str, str]:
    """`--flag=value` and `--flag value` -> {flag: value}; bare `--flag` -> {flag: ""}."""
    flags: dict[str, str] = {}
    items = [a for a in args if isinstance(a, str)]
    for index, item in enumerate(items):
        if not item.startswith("--"):
            continue
        key, sep, value = item.partition("=")
        if not sep and index + 1 < len(items) and not items[index + 1].startswith("--"):
            value = items[index + 1]
        flags[key] = value
    return flags


def _host(region: str, dedicated: bool, endpoint_id: str, project_number: str) -> str:
    if dedicated:
        # Endpoint.dedicatedEndpointDns; the provider does not export it, so it is built here.
        return f"{endpoint_id}.{region}-{project_number}.prediction.vertexai.goog"
    return f"{region}-aiplatform.googleapis.com"


def _logs_url(endpoint_id: str, project: str) -> str:
    query = f'resource.type="aiplatform.googleapis.com/Endpoint"\nresource.labels.endpoint_id="{endpoint_id}"'
    return ("https://console.cloud.google.com/logs/query;query="
            + urllib.parse.quote(query, safe="") + "?project=" + urllib.parse.quote(project, safe=""))
