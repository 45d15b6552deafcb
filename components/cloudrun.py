"""A Cloud Run (v2) service running vLLM's OpenAI-compatible server on one NVIDIA GPU.

The component is the Cloud Run half of the tutorial deployment (gemma-3-1b-it on an L4): one service
with the GPU attached through ``template.node_selector.accelerator``, instance-based billing
(``cpu_idle=False``, required for GPUs), an HTTP startup probe on vLLM's ``/health`` sized from a
time budget, and additive ``roles/run.invoker`` grants. Nothing is public unless
``allow_public=True``; secrets reach the container only as Secret Manager references.

The caller decides the whole container (``components.container.ServingContainer``: image,
command, args, plain environment, port, health path, served model name); this component places
it: the container port and both probes follow ``container.port`` and ``container.health_path``.

Limits checked here, as documented in the pulumi-gcp 10.2 ``cloudrunv2.Service`` docstrings and
the Cloud Run docs:

* probe ``period_seconds``: minimum 1, maximum 240 for a startup probe (3600 for liveness), and
  not smaller than ``timeout_seconds``; ``timeout_seconds`` minimum 1 and smaller than the period;
  ``failure_threshold`` minimum 1 (no maximum is documented on the field);
  ``initial_delay_seconds`` maximum 240 for a startup probe.
* the startup window ``failure_threshold * period_seconds``: the v2 ``Probe`` reference still
  says 240 s, the current health-check guides say 600 s, or 1800 s with a GPU. This component
  allows up to 1800 s (``STARTUP_WINDOW_MAX_SECONDS``); a deploy is the final judge.
* request ``timeout``: at most 3600 s; ``max_instance_request_concurrency``: 1 to 1000.
* GCS volumes need the gen2 execution environment, which this component always sets.

vLLM's Prometheus metrics are collected by Google's Managed Service for Prometheus sidecar for
Cloud Run (https://cloud.google.com/run/docs/monitoring-managed-prometheus-sidecar), pinned by
tag. With no custom RunMonitoring config mounted it scrapes ``0.0.0.0:8080/metrics`` every 60 s
(``DefaultRunMonitoringConfig`` in github.com/GoogleCloudPlatform/run-gmp-sidecar, confgenerator),
so vLLM must serve on port 8080 (checked) and no config secret is needed; it starts after the vLLM
container is healthy (``depends_on``) and writes with the service account's
``roles/monitoring.metricWriter``. The series land on the ``prometheus_target`` resource with
``cluster="__run__"`` and ``namespace=<service name>``. The GPU stays on the vLLM container
(Cloud Run attaches a GPU to one container only).
"""

from __future__ import annotations

import hashlib
import math
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Optional, cast

import pulumi
import pulumi_gcp as gcp

from components import compile_cache
from components.compile_cache import CompileCacheSync
from components.container import ServingContainer
from components.rules import (
    gcp_label_problem,
    is_public_member,
    looks_like_token,
    member_problem,
    pinned_image_problem,
    secret_reference_problem,
)

TYPE_TOKEN = "llm-serving:cloudrun:VllmService"
# Earlier type tokens of this component: aliases keep deployed services from being replaced.
PREVIOUS_TYPE_TOKENS = ("llm-serving:cloudrun:CloudRunVllmService",)

# Cloud Run GPU types (node_selector.accelerator values). Their CPU/memory minimums come from the
# accelerator catalog through the Args, not from here.
GPU_TYPES = ("nvidia-l4", "nvidia-rtx-pro-6000")

METRICS_SIDECAR_IMAGE = "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0"
METRICS_SIDECAR_SCRAPE_PORT = 8080  # the sidecar's default RunMonitoring endpoint (port 8080, path /metrics)
METRICS_SIDECAR_LIMITS = {"cpu": "1", "memory": "512Mi"}

STARTUP_PERIOD_MAX_SECONDS = 240  # startup probe period_seconds maximum (SDK docstring)
STARTUP_WINDOW_MAX_SECONDS = 1800  # failure_threshold * period_seconds with a GPU (Cloud Run docs)
REQUEST_TIMEOUT_MAX_SECONDS = 3600
CONCURRENCY_MAX = 1000

INGRESS = MappingProxyType({
    "all": "INGRESS_TRAFFIC_ALL",
    "internal": "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "internal-and-cloud-load-balancing": "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
})


# Environment variables Cloud Run sets itself and rejects in a revision.
RESERVED_ENV = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")
# The variable the Hugging Face libraries and vLLM read the token from.
HF_TOKEN_ENV = "HF_TOKEN"
# Plain env names that look like credentials: these belong in `secret_env`.
_SECRET_LIKE_ENV = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|CREDENTIAL)", re.IGNORECASE)

_SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def invoker_key(member: str) -> str:
    """A short stable key for an IAM member: child names do not depend on list order."""
    return hashlib.sha256(member.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class SecretRef:
    """A Secret Manager secret read into an environment variable when the instance starts."""

    secret: pulumi.Input[str]  # secret id in the service's project, or projects/<p>/secrets/<id>
    version: str = "latest"  # "latest" or a version number


@dataclass(frozen=True)
class GcsVolume:
    """A Cloud Storage bucket mounted into the container with Cloud Storage FUSE (gen2 only)."""

    bucket: pulumi.Input[str]  # bucket name, without gs://
    mount_path: str = "/models"  # absolute path in the container
    read_only: bool = True  # the server only reads weights
    mount_options: tuple[str, ...] = ("implicit-dirs",)  # gcsfuse flags without leading dashes


@dataclass(frozen=True, kw_only=True)
class CloudRunVllmServiceArgs:
    """Inputs of ``CloudRunVllmService``. Plain values unless they come from another resource."""

    project: str  # project of the service
    region: str  # Cloud Run region with the GPU type available
    service_name: str  # Cloud Run service name: lowercase letters, digits, hyphens, at most 49 characters
    # What runs: image pinned by release tag or digest (e.g. ModelImageBuild.image_by_digest),
    # command, args, plain environment (no credentials), port, health path, served model name.
    container: ServingContainer
    service_account_email: pulumi.Input[str]  # the workload's own service account
    min_cpu: int  # the GPU type's minimum vCPU on Cloud Run (catalog: L4 4, RTX PRO 6000 20)
    min_memory_gib: int  # the GPU type's minimum memory on Cloud Run (catalog: L4 16, RTX PRO 6000 80)
    hf_token: Optional[SecretRef] = None  # the Hugging Face token's secret, read into HF_TOKEN at start
    secret_env: Mapping[str, SecretRef] = field(default_factory=dict)  # more environment read from Secret Manager
    gpu_type: str  # one of GPU_TYPES
    cpu: int  # vCPU limit
    memory_gib: int  # memory limit (GiB)
    gpu_zonal_redundancy: bool  # reserve zonal failover capacity (dearer, own quota); False = best effort
    min_replicas: int  # instances kept warm; 0 scales to zero (cold starts load the model)
    max_replicas: int  # upper bound on instances; each instance holds one GPU
    max_concurrency: int  # requests per instance at once, 1 to 1000
    request_timeout_seconds: int  # per request, at most 3600
    startup_timeout_seconds: int  # time allowed for the model to load before /health answers
    startup_probe_period_seconds: int = 10  # how often the startup probe asks /health
    ingress: str = "all"  # "all", "internal" or "internal-and-cloud-load-balancing" (IAM still applies)
    invokers: tuple[str, ...] = ()  # IAM members granted roles/run.invoker, e.g. "group:ml@example.com"
    allow_public: bool = False  # permit allUsers / allAuthenticatedUsers among invokers
    gcs_volume: Optional[GcsVolume] = None  # weights bucket to mount read-only
    deletion_protection: bool = True  # provider-side guard against deleting the service
    labels: Mapping[str, str] = field(default_factory=dict)  # labels on the service and its revisions
    metrics_sidecar_image: Optional[str] = METRICS_SIDECAR_IMAGE  # Prometheus sidecar scraping vLLM; None: none
    # torch.compile cache restored from and saved to its keyed prefix of compile_cache_bucket by a sidecar
    # (components/compile_cache.py); the service's identity needs object access to that prefix.
    compile_cache: Optional[CompileCacheSync] = None
    compile_cache_bucket: Optional[pulumi.Input[str]] = None


def _validate(a: CloudRunVllmServiceArgs) -> list[str]:
    problems: list[str] = []

    def add(field_name: str, message: str) -> None:
        problems.append(f"{field_name}: {message}")

    if not a.project:
        add("project", "is empty; give the project id")
    if not a.region:
        add("region", "is empty; give a Cloud Run region with GPUs, e.g. us-central1")
    if not _SERVICE_NAME.fullmatch(a.service_name or ""):
        add("service_name", f"got {a.service_name!r}; use 1-49 lowercase letters, digits or hyphens, "
                            "starting with a letter and not ending with a hyphen")
    problems += a.container.problems()

    if a.gpu_type not in GPU_TYPES:
        add("gpu_type", f"got {a.gpu_type!r}; Cloud Run offers {', '.join(GPU_TYPES)}")
    if a.min_cpu < 1 or a.min_memory_gib < 1:
        add("min_cpu/min_memory_gib", f"got {a.min_cpu}/{a.min_memory_gib}; pass the GPU type's minimums "
                                      "from the accelerator catalog (L4: 4 and 16)")
    if a.cpu < a.min_cpu:
        add("cpu", f"got {a.cpu}; {a.gpu_type} on Cloud Run needs at least {a.min_cpu} vCPU, raise it to {a.min_cpu} or more")
    if a.memory_gib < a.min_memory_gib:
        add("memory_gib", f"got {a.memory_gib}; {a.gpu_type} on Cloud Run needs at least {a.min_memory_gib} GiB, "
                          f"raise it to {a.min_memory_gib} or more")

    if a.min_replicas < 0:
        add("min_replicas", f"got {a.min_replicas}; use 0 (scale to zero) or more")
    if a.max_replicas < max(1, a.min_replicas):
        add("max_replicas", f"got {a.max_replicas}; use at least 1 and at least min_replicas ({a.min_replicas})")
    if not 1 <= a.max_concurrency <= CONCURRENCY_MAX:
        add("max_concurrency", f"got {a.max_concurrency}; use 1 to {CONCURRENCY_MAX} "
                               "(usually vLLM's --max-num-seqs, so requests queue inside vLLM)")
    if not 1 <= a.request_timeout_seconds <= REQUEST_TIMEOUT_MAX_SECONDS:
        add("request_timeout_seconds", f"got {a.request_timeout_seconds}; Cloud Run allows 1 to {REQUEST_TIMEOUT_MAX_SECONDS}")
    period = a.startup_probe_period_seconds
    if not 2 <= period <= STARTUP_PERIOD_MAX_SECONDS:
        add("startup_probe_period_seconds", f"got {period}; use 2 to {STARTUP_PERIOD_MAX_SECONDS} "
                                            "(the probe timeout must be shorter than the period)")
    if not period <= a.startup_timeout_seconds <= STARTUP_WINDOW_MAX_SECONDS:
        add("startup_timeout_seconds", f"got {a.startup_timeout_seconds}; use {period} (one probe period) to "
                                       f"{STARTUP_WINDOW_MAX_SECONDS}, the documented startup window with a GPU; "
                                       "a model that loads slower belongs in the image or a bucket, not the hub")
    if a.metrics_sidecar_image is not None:
        problem = pinned_image_problem(a.metrics_sidecar_image)
        if problem:
            add("metrics_sidecar_image", problem)
        if a.container.port != METRICS_SIDECAR_SCRAPE_PORT:
            add("metrics_sidecar_image", f"the metrics sidecar scrapes port {METRICS_SIDECAR_SCRAPE_PORT} (its default "
                                         f"RunMonitoring) but vLLM serves on {a.container.port}; serve on "
                                         f"{METRICS_SIDECAR_SCRAPE_PORT} or set metrics_sidecar_image=None")
    if a.ingress not in INGRESS:
        add("ingress", f"got {a.ingress!r}; use one of {', '.join(INGRESS)}")

    env = a.container.env
    for key, value in env.items():
        if key in RESERVED_ENV:
            add(f"container.env.{key}", f"is set by Cloud Run itself; remove it (reserved: {', '.join(RESERVED_ENV)})")
        elif _SECRET_LIKE_ENV.search(key):
            add(f"container.env.{key}", "looks like a credential; move it to secret_env as a Secret Manager reference")
        if looks_like_token(value):
            add(f"container.env.{key}", "holds what looks like a literal token; store it in Secret Manager and use secret_env")
    if a.hf_token is not None and HF_TOKEN_ENV in a.secret_env:
        add(f"secret_env.{HF_TOKEN_ENV}", "is also given as hf_token; keep one")
    for key, ref in _secret_env(a).items():
        if not _ENV_NAME.fullmatch(key) or key in RESERVED_ENV:
            add(f"secret_env.{key}", "is not a usable variable name")
        if key in env:
            add(f"secret_env.{key}", "is also in container.env; keep one")
        if not isinstance(ref, SecretRef):
            add(f"secret_env.{key}", f"got a {type(ref).__name__}; give SecretRef(secret=..., version=...)")
            continue
        if isinstance(ref.secret, str):
            problem = secret_reference_problem(ref.secret)
            if problem:
                add(f"secret_env.{key}.secret", f"{problem} (the version goes in `version`)")
        if not (ref.version == "latest" or ref.version.isdigit()):
            add(f"secret_env.{key}.version", f"got {ref.version!r}; use 'latest' or a version number")

    for member in a.invokers:
        if is_public_member(member):
            if not a.allow_public:
                add("invokers", f"contains {member!r}, which makes the service public; remove it, "
                                "or set allow_public=True if it really must be public")
        elif (problem := member_problem(member)) is not None:
            add("invokers", problem)

    if a.gcs_volume is not None:
        v = a.gcs_volume
        if isinstance(v.bucket, str) and (not v.bucket or v.bucket.startswith("gs://") or "/" in v.bucket):
            add("gcs_volume.bucket", f"got {v.bucket!r}; give the bare bucket name (no gs://, no path)")
        if not v.mount_path.startswith("/") or ":" in v.mount_path or v.mount_path == "/":
            add("gcs_volume.mount_path", f"got {v.mount_path!r}; use an absolute path without ':', e.g. /models")
        for option in v.mount_options:
            if option.startswith("-"):
                add("gcs_volume.mount_options", f"got {option!r}; write gcsfuse flags without leading dashes")

    for key, value in a.labels.items():
        problem = gcp_label_problem(key, value)
        if problem:
            add(f"labels.{key}", problem)
    problems += _compile_cache_problems(a)
    return problems


def _compile_cache_problems(a: CloudRunVllmServiceArgs) -> list[str]:
    sync = a.compile_cache
    if sync is None:
        return []
    found = sync.problems()
    if a.compile_cache_bucket is None:
        found.append("compile_cache_bucket: required with compile_cache (the bucket holding the cache's prefix)")
    for name, value in sync.env:
        if a.container.env.get(name) != value:
            found.append(f"container.env.{name}: must be {value!r} so the server compiles into the synced directory")
    if a.container.port == compile_cache.CLOUD_RUN_READY_PORT:
        found.append(f"container.port: {a.container.port} is the compile-cache sidecar's ready port; use another")
    return found


def _with_compile_cache(args: CloudRunVllmServiceArgs, server: gcp.cloudrunv2.ServiceTemplateContainerArgsDict,
                        containers: list,
                        volumes: Optional[list]) -> Optional[list]:
    """Add the compile-cache sidecar (the server waits for its restore) and its volume."""
    sync = args.compile_cache
    if sync is None or args.compile_cache_bucket is None:
        return volumes
    health_url = f"http://127.0.0.1:{args.container.port}{args.container.health_path}"
    containers.append(compile_cache.cloudrun_sidecar(args.compile_cache_bucket, sync, health_url))
    server["depends_ons"] = [compile_cache.CLOUD_RUN_CONTAINER]
    mounts: list = list(server.get("volume_mounts") or [])  # type: ignore[arg-type]
    server["volume_mounts"] = [*mounts, {"name": compile_cache.VOLUME, "mount_path": sync.local_dir}]
    return [*(volumes or []), compile_cache.cloudrun_volume()]


class CloudRunVllmService(pulumi.ComponentResource):
    """vLLM's OpenAI-compatible server as a GPU Cloud Run service, private unless told otherwise."""

    uri: pulumi.Output[str]
    service_name: pulumi.Output[str]
    proxy_command: pulumi.Output[str]
    curl_example: pulumi.Output[str]
    openai_example: pulumi.Output[str]
    served_model_name: pulumi.Output[str]

    def __init__(self, name: str, args: CloudRunVllmServiceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        problems = _validate(args)
        if problems:
            raise ValueError(f"CloudRunVllmService {name!r} has invalid arguments:\n  - " + "\n  - ".join(problems))
        super().__init__(TYPE_TOKEN, name, None, pulumi.ResourceOptions.merge(
            pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=old) for old in PREVIOUS_TYPE_TOKENS]), opts))

        serving = args.container
        image = serving.image
        if not isinstance(image, str):
            image = pulumi.Output.from_input(cast(pulumi.Input[str], image)).apply(lambda value: _checked_image(name, value))

        envs: list[gcp.cloudrunv2.ServiceTemplateContainerEnvArgsDict] = [
            {"name": k, "value": v} for k, v in sorted(serving.env.items())]
        envs += [
            {"name": k, "value_source": {"secret_key_ref": {"secret": ref.secret, "version": ref.version}}}
            for k, ref in sorted(_secret_env(args).items())
        ]

        container: gcp.cloudrunv2.ServiceTemplateContainerArgsDict = {
            "name": "vllm",
            "image": image,
            "commands": list(serving.command) or None,
            "args": list(serving.args),
            "envs": envs or None,
            "ports": {"name": "http1", "container_port": serving.port},
            "resources": {
                "limits": {"cpu": str(args.cpu), "memory": f"{args.memory_gib}Gi", "nvidia.com/gpu": "1"},
                "cpu_idle": False,  # instance-based billing: required with a GPU
                "startup_cpu_boost": True,
            },
            "startup_probe": _startup_probe(serving, args.startup_timeout_seconds, args.startup_probe_period_seconds),
            "liveness_probe": {
                "http_get": {"path": serving.health_path, "port": serving.port},
                "period_seconds": 30,
                "timeout_seconds": 5,
                "failure_threshold": 3,
            },
        }
        volumes: list[gcp.cloudrunv2.ServiceTemplateVolumeArgsDict] | None = None
        if args.gcs_volume is not None:
            v = args.gcs_volume
            volumes = [{"name": "model-weights", "gcs": {"bucket": v.bucket, "read_only": v.read_only,
                                                        "mount_options": list(v.mount_options) or None}}]
            container["volume_mounts"] = [{"name": "model-weights", "mount_path": v.mount_path}]

        containers = [container]
        volumes = _with_compile_cache(args, container, containers, volumes)
        if args.metrics_sidecar_image is not None:
            containers.append({
                "name": "metrics-collector",
                "image": args.metrics_sidecar_image,
                "depends_ons": ["vllm"],  # start scraping once vLLM's startup probe passed
                "resources": {"limits": dict(METRICS_SIDECAR_LIMITS), "cpu_idle": False},
            })

        labels = dict(args.labels) or None
        child = pulumi.ResourceOptions(parent=self)
        service = gcp.cloudrunv2.Service(
            f"{name}-service",
            name=args.service_name,
            project=args.project,
            location=args.region,
            ingress=INGRESS[args.ingress],
            deletion_protection=args.deletion_protection,
            labels=labels,
            template={
                "service_account": args.service_account_email,
                "execution_environment": "EXECUTION_ENVIRONMENT_GEN2",
                "node_selector": {"accelerator": args.gpu_type},
                "gpu_zonal_redundancy_disabled": not args.gpu_zonal_redundancy,
                "scaling": {"min_instance_count": args.min_replicas, "max_instance_count": args.max_replicas},
                "max_instance_request_concurrency": args.max_concurrency,
                "timeout": f"{args.request_timeout_seconds}s",
                "labels": labels,
                "containers": containers,
                "volumes": volumes,
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on if opts else None),
        )

        invokers = []
        for member in dict.fromkeys(args.invokers):  # order-preserving de-duplication
            invokers.append(gcp.cloudrunv2.ServiceIamMember(
                f"{name}-invoker-{invoker_key(member)}",
                project=args.project,
                location=args.region,
                name=service.name,
                role="roles/run.invoker",
                member=member,
                opts=child,
            ))

        # The URI is handed out only once the invoker grants exist, so a consumer never calls a
        # service it cannot reach yet.
        self.uri = pulumi.Output.all(service.uri, *[m.id for m in invokers]).apply(lambda values: values[0])
        self.service_name = service.name
        model = serving.served_model_name
        self.served_model_name = pulumi.Output.from_input(model)
        self.proxy_command = service.name.apply(
            lambda n: f"gcloud run services proxy {n} --region {args.region} --project {args.project}")
        self.curl_example = pulumi.Output.all(service.name, self.uri).apply(
            lambda v: _curl_example(v[0], v[1], args.region, args.project, model))
        self.openai_example = self.uri.apply(lambda uri: _openai_example(uri, model))
        self.register_outputs({
            "uri": self.uri,
            "service_name": self.service_name,
            "proxy_command": self.proxy_command,
            "curl_example": self.curl_example,
            "openai_example": self.openai_example,
            "served_model_name": self.served_model_name,
        })


def _checked_image(resource: str, image: str) -> str:
    problem = pinned_image_problem(image)
    if problem:
        raise ValueError(f"CloudRunVllmService {resource!r} has invalid arguments:\n  - container.image: {problem}")
    return image


def _secret_env(a: CloudRunVllmServiceArgs) -> dict[str, SecretRef]:
    """Every variable read from Secret Manager: ``secret_env`` plus the token as HF_TOKEN."""
    refs = dict(a.secret_env)
    if a.hf_token is not None:
        refs[HF_TOKEN_ENV] = a.hf_token
    return refs


def _startup_probe(serving: ServingContainer, budget_seconds: int,
                   period_seconds: int) -> gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgsDict:
    """An HTTP probe on the health path that keeps trying for ``budget_seconds`` (rounded up to whole periods)."""
    return {
        "http_get": {"path": serving.health_path, "port": serving.port},
        "initial_delay_seconds": 0,
        "period_seconds": period_seconds,
        "timeout_seconds": min(5, period_seconds - 1),
        "failure_threshold": math.ceil(budget_seconds / period_seconds),
    }


def _completion_body(model: str) -> str:
    return f'{{"model": "{model}", "prompt": "Cloud Run is a ", "max_tokens": 128, "temperature": 0.9}}'


def _curl_example(service: str, uri: str, region: str, project: str, model: str) -> str:
    body = _completion_body(model)
    return textwrap.dedent(f"""\
        # Through the local proxy (run `gcloud run services proxy {service} --region {region} --project {project}` first):
        curl -sS http://localhost:8080/v1/completions -H 'Content-Type: application/json' -d '{body}'
        # Directly, with your identity token:
        curl -sS {uri}/v1/completions -H "Authorization: Bearer $(gcloud auth print-identity-token)" -H 'Content-Type: application/json' -d '{body}'
        """)


def _openai_example(uri: str, model: str) -> str:
    return textwrap.dedent(f"""\
        # pip install openai google-auth   (or use: api_key=$(gcloud auth print-identity-token))
        import google.auth.transport.requests
        import google.oauth2.id_token
        from openai import OpenAI

        token = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), "{uri}")
        client = OpenAI(base_url="{uri}/v1", api_key=token)
        reply = client.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Hello"}}])
        print(reply.choices[0].message.content)
        """)
