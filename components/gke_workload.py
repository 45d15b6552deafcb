"""vLLM on GKE: one model served from a TPU slice or GPU node pool, autoscaled on a vLLM metric.

Children of one ``llm-serving:gke:VllmGkeWorkload``, all on the Kubernetes provider given in the
Args (built from the cluster's outputs, never the ambient kubeconfig):

- Namespace and Kubernetes ServiceAccount (no token mounted: neither vLLM nor the GCS FUSE
  driver needs it, the driver gets its own token through the CSIDriver's tokenRequests); on the
  model bucket, granted to that ServiceAccount's Workload Identity principal (no Google service
  account): listing object names, ``roles/storage.objectViewer`` on the prefixes it only reads
  (its weights copy) and ``roles/storage.objectUser`` only on the prefixes it writes (its compile
  cache), through IAM conditions on ``resource.name``;
- the API key (and, only when given, a Hugging Face token) as Kubernetes Secrets fed from Pulumi
  secrets, read through ``secretKeyRef`` (vLLM reads ``VLLM_API_KEY``, so the key is never in argv);
- a NetworkPolicy admitting the serving port only from the configured namespaces and CIDRs and
  from Managed Prometheus (namespace ``gmp-system``); enforced by Dataplane V2;
- the Deployment: accelerator nodeSelectors, tolerations and limits from the node pool, the model
  bucket mounted at ``/data`` through the GCS FUSE CSI driver with parallel downloads and an
  in-memory file cache, ``/dev/shm`` in memory, a startup probe sized for download plus XLA
  compilation, readiness and liveness on ``/health``; no privilege escalation, every capability
  dropped, seccomp ``RuntimeDefault``, CPU and memory requests so the pod is never BestEffort;
- a LoadBalancer Service, internal unless the Args ask for a public one (which needs the API
  key), keeping client addresses (``externalTrafficPolicy: Local``) so CIDR rules see them;
- a PodMonitoring scraping ``/metrics`` on the container's named port, and an ``autoscaling/v2``
  HPA on ``prometheus.googleapis.com|<metric>|gauge`` (served by the custom-metrics adapter, see
  ``components/metrics_adapter.py``), with the caller's ``behavior`` (stabilization windows, one
  replica removed per period) when given;
- graceful drain: a preStop sleep while load balancers stop sending, the grace period the caller
  sizes for the server's own drain, and a PodDisruptionBudget (one voluntary eviction at a time);
- on a pool with a ComputeClass (``AcceleratorPlacement.compute_class``), the class as the node
  selector (with its taint tolerated) instead of the accelerator selectors.

Replicas: the HPA owns them, or, with ``external_autoscaler``, KEDA's ScaledObject (scale to zero,
``components/keda_scaling.py``) and no HPA is created here. The Deployment's manifest leaves
``spec.replicas`` out, so Kubernetes starts one pod, the autoscaler moves it to its own bounds, and a
later ``pulumi up`` (server-side apply, where Pulumi only owns fields it sets) never resets what the
autoscaler chose. No ``ignore_changes`` needed.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from components import compile_cache
from components.compile_cache import CompileCacheSync
from components.container import ServingContainer
from components.gke_cluster import AcceleratorPlacement
from components.hpa_behavior import HpaBehavior
from components.iam import scoped_bucket_member
from components.rules import (
    bucket_name_problem,
    dns_label_problem,
    k8s_label_problem,
    looks_like_token,
)

TYPE_TOKEN = "llm-serving:gke:VllmWorkload"
# Earlier type tokens of this component: aliases keep deployed workloads from being replaced.
PREVIOUS_TYPE_TOKENS = ("llm-serving:gke:VllmGkeWorkload",)

# The tutorial's gcsfuse options: parallel downloads into an unbounded file cache (RAM-backed below).
DEFAULT_MOUNT_OPTIONS = (
    "implicit-dirs,file-cache:enable-parallel-downloads:true,file-cache:parallel-downloads-per-file:100,"
    "file-cache:max-parallel-downloads:-1,file-cache:download-chunk-size-mb:10,file-cache:max-size-mb:-1"
)
# gcsfuse flags the CSI driver manages itself and rejects in mountOptions (GKE docs, Cloud Storage FUSE CSI
# driver performance tuning: https://cloud.google.com/kubernetes-engine/docs/how-to/cloud-storage-fuse-csi-driver-perf).
_DISALLOWED_MOUNT_FLAGS = ("app-name", "temp-dir", "foreground", "log-file", "log-format", "key-file",
                           "token-url", "reuse-token-from-url")
# vLLM gauges an HPA can average per pod; exported by every server this project pins (vllm-project/vllm
# vllm/v1/metrics/loggers.py; stacks/catalog/data/vllm_metrics.yaml has each one's versions).
# The caller chooses the gauge and its target.
SCALING_GAUGES = ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc")
_RENAMED_METRICS = {"vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc"}
_FRACTION_METRICS = ("vllm:kv_cache_usage_perc",)
HF_ENV_NAMES = ("HUGGING_FACE_HUB_TOKEN", "HF_TOKEN")
SECRET_KEY = "hf_api_token"
API_KEY_ENV = "VLLM_API_KEY"  # read by vLLM's server (vllm/envs.py); --api-key would put it in argv
API_KEY_SECRET_KEY = "api_key"
# Managed Service for Prometheus runs its collectors in this namespace; they scrape /metrics.
PROMETHEUS_NAMESPACE = "gmp-system"
# Where a public Service records who acknowledged it (read by the policy pack).
PUBLIC_ACK_ANNOTATION = "llm-serving/public-endpoint"

CONTAINER_NAME = "vllm"  # the serving container; dashboards and logs select it by name
COMPUTE_CLASS_SELECTOR = "cloud.google.com/compute-class"


@dataclass(frozen=True)
class PodPeer:
    """Pods in one namespace, selected by labels, as a NetworkPolicy source."""

    namespace: str
    match_labels: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class VllmGkeWorkloadArgs:
    """Inputs of ``VllmGkeWorkload``. The caller decides the container; this component places it."""

    provider: k8s.Provider  # Kubernetes provider of the target cluster (GkeCluster.provider)
    project: str  # names the Workload Identity pool <project>.svc.id.goog
    project_number: pulumi.Input[str]  # used in the principal:// member of the bucket grant
    model_bucket: pulumi.Input[str]  # bucket name (no gs://) mounted at mount_path
    # What runs: image (tag or digest, never :latest), command, args, plain environment (never the
    # HF token), port (container port `http`, Service port and scrape port) and health path.
    container: ServingContainer
    accelerator: AcceleratorPlacement  # from GkeCluster.placement(pool): selectors and capacity
    namespace: str  # Kubernetes namespace (created here unless create_namespace=False)
    create_namespace: bool = True  # False when the namespace exists or another workload in it creates it
    app_name: str = "vllm"  # Deployment, Service, PodMonitoring and HPA name
    service_account_name: Optional[str] = None  # Kubernetes ServiceAccount; default "<app_name>"
    hf_token: Optional[pulumi.Input[str]] = None  # Hugging Face token (a Pulumi secret); gated models only
    hf_secret_name: Optional[str] = None  # Kubernetes Secret with key hf_api_token; default "<app_name>-hf-token"
    pods_per_node: int = 1  # replicas sharing one node; devices per pod = count_per_node / pods_per_node
    startup_timeout_seconds: int  # startup probe budget: weight load + XLA compilation
    probe_period_seconds: int = 10  # startup probe period; failureThreshold = budget / period
    min_replicas: int  # HPA lower bound
    max_replicas: int  # HPA upper bound; at most max nodes x pods_per_node
    autoscaling_metric: str  # vLLM gauge the HPA averages per pod, one of SCALING_GAUGES
    autoscaling_target: float  # per pod: e.g. 10 waiting requests, or a 0-1 fraction for KV-cache usage
    scrape_interval: str = "15s"  # PodMonitoring interval
    public_load_balancer: bool = False  # default: internal passthrough load balancer
    mount_path: str  # where the bucket is mounted (the server's download dir)
    gcsfuse_mount_options: str = DEFAULT_MOUNT_OPTIONS  # comma-separated, no spaces
    cpu_request: Optional[str] = None  # required, e.g. "8"; sized from the node shape by the stack
    memory_request: Optional[str] = None  # required, e.g. "64Gi"
    labels: Mapping[str, str] = field(default_factory=dict)  # extra Kubernetes labels (an invalid one is refused)
    api_key: Optional[pulumi.Input[str]] = None  # the key clients send as a Bearer token (a Pulumi secret)
    api_key_secret_name: Optional[str] = None  # Kubernetes Secret with key api_key; default "<app_name>-api-key"
    allowed_namespaces: tuple[str, ...] = ()  # namespaces whose pods may reach the port (plus gmp-system)
    allowed_cidrs: tuple[str, ...] = ()  # client ranges that may reach the port, e.g. ("10.128.0.0/9",)
    bucket_prefixes: tuple[str, ...] = ()  # object prefixes the pod reads and writes (compile caches)
    read_prefixes: tuple[str, ...] = ()  # object prefixes the pod only reads (the weights copy)
    run_as_user: Optional[int] = None  # non-root UID when the image supports it; None: the image's user
    protect: bool = False  # Pulumi protect on the namespace and the Secrets (losing them is an outage)
    public_endpoint_acknowledgements: tuple[str, ...] = ()  # recorded on a public Service for the policy pack
    # Another controller owns the replicas (KEDA's ScaledObject, components/keda_scaling.py): no HPA here,
    # and min_replicas may be 0. Two autoscalers on one Deployment would fight over spec.replicas.
    external_autoscaler: bool = False
    load_balancer: bool = True  # False: a ClusterIP Service (clients come through the KEDA interceptor)
    allowed_pods: tuple[PodPeer, ...] = ()  # pods (by namespace and labels) that may reach the port
    # Calm autoscaling: stabilization windows and the scale-down pace (None: Kubernetes' defaults, which add
    # replicas within 15 s of a spike and remove them 5 minutes after it).
    hpa_behavior: Optional[HpaBehavior] = None
    # Graceful drain. On termination the pod leaves the Service's endpoints at once; the preStop hook then
    # sleeps while load balancers stop sending to it, SIGTERM follows, and vLLM drains (its --shutdown-timeout,
    # set by the caller in the container args) within the grace period.
    prestop_sleep_seconds: int = 15
    termination_grace_period_seconds: int = 60  # at least prestop_sleep_seconds + the server's drain
    disruption_budget: bool = True  # a PodDisruptionBudget: voluntary evictions take one replica at a time
    # Compile cache on local disk, restored from and saved to its keyed bucket prefix (which
    # bucket_prefixes must include); None: the server compiles at every start.
    compile_cache: Optional[CompileCacheSync] = None
    compile_cache_image: Optional[str] = None  # the sync image as pulled (e.g. through a remote repository)


def hpa_metric_name(metric: str) -> str:
    """A Prometheus gauge as Managed Service for Prometheus exposes it to the custom metrics API."""
    return f"prometheus.googleapis.com|{metric}|gauge"


def _quantity(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def validate_args(args: VllmGkeWorkloadArgs) -> list[str]:
    p: list[str] = []
    acc = args.accelerator
    p += args.container.problems()
    for fname in ("namespace", "app_name", "hf_secret_name"):
        value = getattr(args, fname)
        if value is None:
            continue
        problem = dns_label_problem(value)
        if problem:
            p.append(f"{fname}: {problem}")
    ksa = args.service_account_name or args.app_name
    if dns_label_problem(ksa):
        p.append(f"service_account_name: got {ksa!r}; use a DNS label")
    if isinstance(args.model_bucket, str) and bucket_name_problem(args.model_bucket):
        p.append(f"model_bucket: got {args.model_bucket!r}; give the bucket name without gs:// (3-63 lowercase "
                 f"letters, digits, dots, hyphens, underscores)")
    # Tokens only ever travel as Secrets.
    if any(a == "--api-key" or a.startswith("--api-key=") for a in args.container.args):
        p.append("container.args: --api-key would put the key in the pod spec and the plan; pass it as api_key "
                 f"(read from a Kubernetes Secret as {API_KEY_ENV})")
    if API_KEY_ENV in args.container.env:
        p.append(f"container.env.{API_KEY_ENV}: the API key must not be a plain env value; pass it as api_key")
    if args.public_load_balancer and not args.load_balancer:
        p.append("public_load_balancer: needs load_balancer; a ClusterIP Service has no load balancer to make public")
    if args.public_load_balancer and args.api_key is None:
        p.append("public_load_balancer: an external load balancer without api_key is an unauthenticated "
                 "internet endpoint; give api_key")
    for namespace in args.allowed_namespaces:
        problem = dns_label_problem(namespace)
        if problem:
            p.append(f"allowed_namespaces: {problem}")
    for cidr in args.allowed_cidrs:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            p.append(f"allowed_cidrs: got {cidr!r}; use a network in CIDR notation such as 10.128.0.0/9")
    if not args.bucket_prefixes and not args.read_prefixes:
        p.append("bucket_prefixes, read_prefixes: give the object prefixes the workload writes (its compile cache) "
                 "or reads (its weights); the pod gets no other object access")
    if not args.cpu_request or not args.memory_request:
        p.append("cpu_request and memory_request: both are required; without them the pod is BestEffort, the "
                 "first evicted when the node's in-memory file cache grows")
    for fname in ("bucket_prefixes", "read_prefixes"):
        for prefix in getattr(args, fname):
            if not prefix or prefix.startswith("/") or not prefix.endswith("/"):
                p.append(f"{fname}: got {prefix!r}; give an object prefix ending in / without a leading /")
    if args.run_as_user is not None and args.run_as_user < 1:
        p.append(f"run_as_user: got {args.run_as_user}; give a non-root UID (1 or more) or None")
    for key, value in args.container.env.items():
        if key in HF_ENV_NAMES:
            p.append(f"container.env.{key}: the Hugging Face token must not be a plain env value; pass it as hf_token "
                     f"(a Pulumi secret) and it is read from a Kubernetes Secret")
        elif looks_like_token(value):
            p.append(f"container.env.{key}: looks like a Hugging Face token; pass it as hf_token instead of plain env")

    for key, value in args.labels.items():
        problem = k8s_label_problem(key, value)
        if problem:
            p.append(f"labels: {problem}")

    # Accelerator placement and capacity.
    if acc.kind not in ("tpu", "gpu"):
        p.append(f"accelerator.kind: got {acc.kind!r}; use tpu or gpu")
    if acc.kind == "tpu":
        if not acc.tpu_topology:
            p.append(f"accelerator.tpu_topology: required for TPU pool {acc.pool!r} (e.g. 2x4)")
        if acc.hosts > 1:
            p.append(f"accelerator: pool {acc.pool!r} is a {acc.hosts}-host {acc.tpu_topology} slice; vLLM on GKE TPU "
                     f"serves from single-host slices only (ct6e-standard-8t = 2x4, -4t = 2x2, -1t = 1x1)")
    if args.pods_per_node < 1 or acc.count_per_node % max(args.pods_per_node, 1) != 0:
        p.append(f"pods_per_node: got {args.pods_per_node}; it must divide the {acc.count_per_node} devices per node "
                 f"of pool {acc.pool!r}")
    if args.hpa_behavior is not None:
        p += args.hpa_behavior.problems()
    if args.prestop_sleep_seconds < 0:
        p.append(f"prestop_sleep_seconds: got {args.prestop_sleep_seconds}; 0 or more")
    if args.termination_grace_period_seconds < args.prestop_sleep_seconds + 1:
        p.append(f"termination_grace_period_seconds: got {args.termination_grace_period_seconds}, which leaves the "
                 f"server no time after the {args.prestop_sleep_seconds} s preStop sleep; raise it")
    if args.min_replicas < (0 if args.external_autoscaler else 1):
        p.append(f"min_replicas: got {args.min_replicas}; the HPA needs at least 1 (0 only with external_autoscaler)")
    if args.max_replicas < args.min_replicas:
        p.append(f"max_replicas: got {args.max_replicas}, below min_replicas {args.min_replicas}; raise it")
    capacity = acc.max_nodes * args.pods_per_node
    # With a ComputeClass, nodes beyond the pool come from its fallbacks.
    if args.max_replicas > capacity and acc.compute_class is None:
        p.append(f"max_replicas: got {args.max_replicas}, but node pool {acc.pool!r} holds at most {capacity} "
                 f"(max {acc.max_nodes} nodes x {args.pods_per_node} pods per node); lower max_replicas to {capacity} "
                 f"or raise the pool's total_max_node_count")

    # Autoscaling metric.
    metric = args.autoscaling_metric
    if metric in _RENAMED_METRICS:
        p.append(f"autoscaling_metric: {metric!r} was removed in vLLM 0.12 (hidden in 0.11); use "
                 f"{_RENAMED_METRICS[metric]!r} with a 0-1 target")
    elif metric not in SCALING_GAUGES:
        p.append(f"autoscaling_metric: got {metric!r}; use a vLLM gauge: {', '.join(SCALING_GAUGES)}")
    target = args.autoscaling_target
    if target <= 0:
        p.append(f"autoscaling_target: got {target}; use a positive number")
    elif metric in _FRACTION_METRICS and target > 1:
        p.append(f"autoscaling_target: got {target} for {metric}, a 0-1 fraction; use e.g. 0.8")
    if not re.fullmatch(r"\d+s", args.scrape_interval):
        p.append(f"scrape_interval: got {args.scrape_interval!r}; give seconds like 15s")

    # Probes.
    if args.probe_period_seconds < 1:
        p.append(f"probe_period_seconds: got {args.probe_period_seconds}; use 1 or more")
    elif args.startup_timeout_seconds < args.probe_period_seconds:
        p.append(f"startup_timeout_seconds: got {args.startup_timeout_seconds}, below the probe period "
                 f"{args.probe_period_seconds}; give the full download + compile budget (default 3600)")

    # GCS FUSE.
    opts = args.gcsfuse_mount_options
    if " " in opts:
        p.append("gcsfuse_mount_options: contains spaces; write a comma-separated list without spaces")
    for option in filter(None, opts.split(",")):
        if option.split(":", 1)[0].split("=", 1)[0] in _DISALLOWED_MOUNT_FLAGS:
            p.append(f"gcsfuse_mount_options: {option!r} is managed by the CSI driver and rejected; remove it")
    if not args.mount_path.startswith("/") or args.mount_path in ("/", "/dev/shm"):
        p.append(f"mount_path: got {args.mount_path!r}; give an absolute directory such as /data")
    p += _compile_cache_problems(args)
    return p


def _compile_cache_problems(args: VllmGkeWorkloadArgs) -> list[str]:
    sync = args.compile_cache
    if sync is None:
        return []
    found = sync.problems()
    if sync.prefix not in args.bucket_prefixes:
        found.append(f"compile_cache.prefix: {sync.prefix!r} is not among bucket_prefixes; the pod could not save it")
    if sync.local_dir.startswith(args.mount_path.rstrip("/") + "/") or sync.local_dir == args.mount_path:
        found.append(f"compile_cache.local_dir: got {sync.local_dir!r}, on the bucket mount {args.mount_path!r}; "
                     "a cache on GCS FUSE is not reused, give a local directory")
    for name, value in sync.env:
        if args.container.env.get(name) != value:
            found.append(f"container.env.{name}: must be {value!r} so the server compiles into the synced directory")
    return found


def _with_compile_cache(args: VllmGkeWorkloadArgs, volumes: list, mounts: list) -> list:
    """Add the compile cache's volumes and server mount; return the pod's init containers."""
    sync = args.compile_cache
    if sync is None:
        return []
    volumes += compile_cache.k8s_volumes()
    mounts.append(compile_cache.k8s_server_mount(sync))
    health_url = f"http://127.0.0.1:{args.container.port}{args.container.health_path}"
    return compile_cache.k8s_init_containers(args.model_bucket, sync, health_url, image=args.compile_cache_image)


class VllmGkeWorkload(pulumi.ComponentResource):
    """A vLLM Deployment on GKE with its Service, Workload Identity, scraping and HPA."""

    namespace: str
    service_name: str
    service_port: int
    hpa_metric_name: str
    in_cluster_url: str
    load_balancer_ip: pulumi.Output[Optional[str]]
    port_forward_command: str

    def __init__(self, name: str, args: VllmGkeWorkloadArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, pulumi.ResourceOptions.merge(
            pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=old) for old in PREVIOUS_TYPE_TOKENS]), opts))
        problems = validate_args(args)
        if problems:
            raise ValueError(f"VllmGkeWorkload {name!r}: " + "; ".join(problems))

        acc = args.accelerator
        serving = args.container
        ns = args.namespace
        ksa_name = args.service_account_name or args.app_name
        hf_secret_name = args.hf_secret_name or f"{args.app_name}-hf-token"
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        selector = {"app.kubernetes.io/name": args.app_name, "app.kubernetes.io/instance": name}
        labels = {**{k: v for k, v in args.labels.items() if not k8s_label_problem(k, v)},
                  **selector, "app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "llm-serving",
                  "app.kubernetes.io/component": "model-server"}

        namespace_deps: list[pulumi.Resource] = []
        if args.create_namespace:
            namespace = k8s.core.v1.Namespace(
                f"{name}-namespace",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=ns, labels={**labels, "app.kubernetes.io/component": "namespace"}),
                opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(delete_before_replace=True,
                                                                                   protect=args.protect)),
            )
            namespace_deps.append(namespace)
        in_ns = pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=namespace_deps))
        secret_opts = pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(protect=args.protect))

        ksa = k8s.core.v1.ServiceAccount(
            f"{name}-ksa",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ksa_name, namespace=ns, labels=labels),
            automount_service_account_token=False,
            opts=in_ns,
        )

        # Bucket access for this ServiceAccount only, by its Workload Identity principal.
        self.workload_identity_principal = pulumi.Output.concat(
            "principal://iam.googleapis.com/projects/", args.project_number,
            "/locations/global/workloadIdentityPools/", args.project,
            ".svc.id.goog/subject/ns/", ns, "/sa/", ksa_name,
        )
        # Listing is checked on the bucket itself, object access on each object's name: one grant
        # lets GCS FUSE and the streamer list, the others read the weights copy and write only the
        # prefixes this workload owns (its compile cache).
        principal = self.workload_identity_principal
        bucket_grants = [
            scoped_bucket_member(f"{name}-bucket-list", bucket=args.model_bucket, role="roles/storage.objectViewer",
                                 member=principal, title="list-only", prefixes=None, parent=self),
            *([scoped_bucket_member(
                f"{name}-bucket-prefixes", bucket=args.model_bucket, role="roles/storage.objectUser", member=principal,
                title="own-prefixes", prefixes=args.bucket_prefixes, parent=self,
                # The same objectUser grant as before, now limited to the workload's prefixes.
                aliases=[pulumi.Alias(name=f"{name}-bucket-object-user")])] if args.bucket_prefixes else []),
            *([scoped_bucket_member(f"{name}-bucket-read", bucket=args.model_bucket, role="roles/storage.objectViewer",
                                    member=principal, title="read-prefixes", prefixes=args.read_prefixes, parent=self)]
              if args.read_prefixes else []),
        ]
        access = ["list object names in the bucket"]
        if args.read_prefixes:
            access.append(f"read objects under {', '.join(args.read_prefixes)}")
        if args.bucket_prefixes:
            access.append(f"read, write and delete objects under {', '.join(args.bucket_prefixes)}")
        self.bucket_access = "; ".join(access) + " only"

        env = [k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in serving.env.items()]
        pod_deps: list[pulumi.Resource] = [ksa, *bucket_grants]
        if args.api_key is not None:
            api_key_secret_name = args.api_key_secret_name or f"{args.app_name}-api-key"
            pod_deps.append(k8s.core.v1.Secret(
                f"{name}-api-key",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=api_key_secret_name, namespace=ns, labels=labels),
                type="Opaque",
                string_data={API_KEY_SECRET_KEY: pulumi.Output.secret(args.api_key)},
                opts=secret_opts,
            ))
            env.append(k8s.core.v1.EnvVarArgs(
                name=API_KEY_ENV,
                value_from=k8s.core.v1.EnvVarSourceArgs(secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                    name=api_key_secret_name, key=API_KEY_SECRET_KEY)),
            ))
        if args.hf_token is not None:
            hf_secret = k8s.core.v1.Secret(
                f"{name}-hf-token",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=hf_secret_name, namespace=ns, labels=labels),
                type="Opaque",
                string_data={SECRET_KEY: pulumi.Output.secret(args.hf_token)},
                opts=secret_opts,
            )
            pod_deps.append(hf_secret)
            for env_name in HF_ENV_NAMES:
                env.append(k8s.core.v1.EnvVarArgs(
                    name=env_name,
                    value_from=k8s.core.v1.EnvVarSourceArgs(secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                        name=hf_secret_name, key=SECRET_KEY)),
                ))

        node_selector: dict[str, Any]
        tolerations: list[k8s.core.v1.TolerationArgs] = []
        if acc.kind == "tpu":
            node_selector = {"cloud.google.com/gke-tpu-accelerator": acc.gke_accelerator,
                             "cloud.google.com/gke-tpu-topology": acc.tpu_topology}
            device_resource = "google.com/tpu"
        else:
            node_selector = {"cloud.google.com/gke-accelerator": acc.gke_accelerator}
            device_resource = "nvidia.com/gpu"
        tolerations.append(k8s.core.v1.TolerationArgs(key=device_resource, operator="Exists", effect="NoSchedule"))
        if acc.compute_class is not None:
            # The class decides the node (the pool, then its fallbacks), with the same accelerator shape.
            node_selector = {COMPUTE_CLASS_SELECTOR: acc.compute_class}
            tolerations.append(k8s.core.v1.TolerationArgs(key=COMPUTE_CLASS_SELECTOR, operator="Equal",
                                                          value=acc.compute_class, effect="NoSchedule"))
        devices = acc.count_per_node // args.pods_per_node
        limits = {device_resource: str(devices)}
        requests = {device_resource: str(devices)}
        for key, value in (("cpu", args.cpu_request), ("memory", args.memory_request)):
            if value:
                requests[key] = value

        period = args.probe_period_seconds
        http_get = k8s.core.v1.HTTPGetActionArgs(path=serving.health_path, port="http")
        server_mounts = [
            k8s.core.v1.VolumeMountArgs(name="gcs-fuse-csi-ephemeral", mount_path=args.mount_path),
            k8s.core.v1.VolumeMountArgs(name="dshm", mount_path="/dev/shm"),
        ]
        extra_volumes: list[k8s.core.v1.VolumeArgs] = []
        init_containers = _with_compile_cache(args, extra_volumes, server_mounts)
        container = k8s.core.v1.ContainerArgs(
            name=CONTAINER_NAME,
            image=serving.image,
            # Re-resolves the reference on every start (layers stay cached): a pod never runs an
            # image another pod's credentials pulled, and a digest reference makes it a cheap check.
            image_pull_policy="Always",
            command=list(serving.command),
            args=list(serving.args),
            env=env,
            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=serving.port, protocol="TCP")],
            resources=k8s.core.v1.ResourceRequirementsArgs(limits=limits, requests=requests),
            security_context=container_security_context(args.run_as_user),
            startup_probe=k8s.core.v1.ProbeArgs(http_get=http_get, period_seconds=period, timeout_seconds=5,
                                                failure_threshold=math.ceil(args.startup_timeout_seconds / period)),
            readiness_probe=k8s.core.v1.ProbeArgs(http_get=http_get, period_seconds=10, timeout_seconds=5,
                                                  failure_threshold=3),
            liveness_probe=k8s.core.v1.ProbeArgs(http_get=http_get, period_seconds=15, timeout_seconds=10,
                                                 failure_threshold=4),
            lifecycle=drain_lifecycle(args.prestop_sleep_seconds),
            volume_mounts=server_mounts,
        )
        volumes = [
            # The gcsfuse sidecar finds this volume by name and keeps its file cache in RAM.
            k8s.core.v1.VolumeArgs(name="gke-gcsfuse-cache", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory")),
            k8s.core.v1.VolumeArgs(name="dshm", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory")),
            k8s.core.v1.VolumeArgs(name="gcs-fuse-csi-ephemeral", csi=k8s.core.v1.CSIVolumeSourceArgs(
                driver="gcsfuse.csi.storage.gke.io",
                volume_attributes={"bucketName": args.model_bucket, "mountOptions": args.gcsfuse_mount_options},
            )),
            *extra_volumes,
        ]
        capacity = acc.max_nodes * args.pods_per_node
        # Surge only when the pool (or the class's fallbacks) has room for one more pod; otherwise replace in place.
        surge = capacity > args.max_replicas or acc.compute_class is not None
        strategy = k8s.apps.v1.DeploymentStrategyArgs(
            type="RollingUpdate",
            rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=1 if surge else 0,
                                                                   max_unavailable=0 if surge else 1),
        )
        await_minutes = math.ceil(args.startup_timeout_seconds / 60) + 10
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.app_name, namespace=ns, labels=labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                # replicas left out on purpose: the HPA owns it (see the module docstring).
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                strategy=strategy,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels=labels,
                        annotations={
                            "gke-gcsfuse/volumes": "true",
                            # 0 = no limit: the sidecar was OOM-killed/throttled at the old defaults.
                            "gke-gcsfuse/cpu-limit": "0",
                            "gke-gcsfuse/memory-limit": "0",
                            "gke-gcsfuse/ephemeral-storage-limit": "0",
                        },
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=ksa_name,
                        automount_service_account_token=False,
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")),
                        node_selector=node_selector,
                        tolerations=tolerations,
                        init_containers=init_containers or None,
                        containers=[container],
                        volumes=volumes,
                        termination_grace_period_seconds=args.termination_grace_period_seconds,
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(
                depends_on=pod_deps,
                delete_before_replace=True,
                # First start downloads weights and compiles: wait as long as the startup probe does.
                custom_timeouts=pulumi.CustomTimeouts(create=f"{await_minutes}m", update=f"{await_minutes}m"),
            )),
        )

        if not args.load_balancer:
            # Pulumi waits for a Service's endpoints; a Deployment scaled to zero has none, so an
            # update made while it sleeps would time out.
            annotations = {"pulumi.com/skipAwait": "true"} if args.external_autoscaler else {}
        elif args.public_load_balancer:
            annotations = ({PUBLIC_ACK_ANNOTATION: ",".join(args.public_endpoint_acknowledgements)}
                           if args.public_endpoint_acknowledgements else {})
        else:
            annotations = {"networking.gke.io/load-balancer-type": "Internal"}
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.app_name, namespace=ns, labels=labels, annotations=annotations),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="LoadBalancer" if args.load_balancer else "ClusterIP",
                # Deliver to local pods only, so the pod sees the client's address (no SNAT) and
                # the NetworkPolicy's CIDR rules apply to clients, not to node addresses.
                external_traffic_policy="Local" if args.load_balancer else None,
                selector=selector,
                ports=[k8s.core.v1.ServicePortArgs(name="http", protocol="TCP", port=serving.port, target_port="http")],
            ),
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(delete_before_replace=True)),
        )

        sources = [k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels={"kubernetes.io/metadata.name": namespace})) for namespace in
            (*args.allowed_namespaces, PROMETHEUS_NAMESPACE)]
        sources += [k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr))
                    for cidr in args.allowed_cidrs]
        sources += [k8s.networking.v1.NetworkPolicyPeerArgs(
            namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": peer.namespace}),
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(peer.match_labels)))
            for peer in args.allowed_pods]
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.app_name, namespace=ns, labels=labels),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                policy_types=["Ingress"],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=sources,
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=serving.port, protocol="TCP")],
                )],
            ),
            opts=in_ns,
        )

        k8s.apiextensions.CustomResource(
            f"{name}-podmonitoring",
            api_version="monitoring.googleapis.com/v1",
            kind="PodMonitoring",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.app_name, namespace=ns, labels=labels),
            spec={
                "selector": {"matchLabels": selector},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": args.scrape_interval}],
            },
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[deployment])),
        )

        metric = args.autoscaling_metric
        target = args.autoscaling_target
        self.hpa_metric_name = hpa_metric_name(metric)
        if not args.external_autoscaler:
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-hpa",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=args.app_name, namespace=ns, labels=labels),
                spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                    scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                        api_version="apps/v1", kind="Deployment", name=args.app_name),
                    min_replicas=args.min_replicas,
                    max_replicas=args.max_replicas,
                    behavior=hpa_behavior_args(args.hpa_behavior),
                    metrics=[k8s.autoscaling.v2.MetricSpecArgs(
                        type="Pods",
                        pods=k8s.autoscaling.v2.PodsMetricSourceArgs(
                            metric=k8s.autoscaling.v2.MetricIdentifierArgs(name=self.hpa_metric_name),
                            target=k8s.autoscaling.v2.MetricTargetArgs(type="AverageValue",
                                                                       average_value=_quantity(target)),
                        ),
                    )],
                ),
                opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[deployment])),
            )

        if args.disruption_budget:
            # Node drains (upgrades, repairs, consolidation) evict one replica at a time; a replica still
            # starting (not Ready) may always be evicted, so it never blocks a drain.
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=args.app_name, namespace=ns, labels=labels),
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                    selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                    max_unavailable=1,
                    unhealthy_pod_eviction_policy="AlwaysAllow",
                ),
                opts=in_ns,
            )

        xla = serving.env.get("VLLM_XLA_CACHE_PATH", "")
        if xla.startswith(args.mount_path) and args.max_replicas > 1:
            pulumi.log.warn(
                f"VLLM_XLA_CACHE_PATH={xla} is on the bucket and max_replicas={args.max_replicas}: replicas compiling "
                f"at the same time can fail with 'cannot create directories'; let one replica warm the cache first.",
                resource=self)

        self.namespace = ns
        self.service_name = args.app_name
        port = serving.port
        self.service_port = port
        self.in_cluster_url = f"http://{args.app_name}.{ns}.svc.cluster.local:{port}"
        self.port_forward_command = f"kubectl -n {ns} port-forward svc/{args.app_name} {port}:{port}"
        self.load_balancer_ip = service.status.apply(_ingress_ip)
        self.register_outputs({
            "namespace": self.namespace,
            "service_name": self.service_name,
            "service_port": self.service_port,
            "hpa_metric_name": self.hpa_metric_name,
            "in_cluster_url": self.in_cluster_url,
            "load_balancer_ip": self.load_balancer_ip,
            "port_forward_command": self.port_forward_command,
            "workload_identity_principal": self.workload_identity_principal,
            "bucket_access": self.bucket_access,
        })


def hpa_behavior_args(behavior: Optional[HpaBehavior]) -> Optional[k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs]:
    """``HpaBehavior.spec()`` as the typed HPA input (the one definition of the rules)."""
    if behavior is None:
        return None
    spec = behavior.spec()

    def rules(r: dict) -> k8s.autoscaling.v2.HPAScalingRulesArgs:
        return k8s.autoscaling.v2.HPAScalingRulesArgs(
            stabilization_window_seconds=r["stabilizationWindowSeconds"], select_policy=r["selectPolicy"],
            policies=[k8s.autoscaling.v2.HPAScalingPolicyArgs(type=p["type"], value=p["value"], period_seconds=p["periodSeconds"])
                      for p in r["policies"]])

    return k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(scale_up=rules(spec["scaleUp"]),
                                                                 scale_down=rules(spec["scaleDown"]))


def drain_lifecycle(prestop_sleep_seconds: int) -> Optional[k8s.core.v1.LifecycleArgs]:
    """preStop: wait while the pod, already out of the Service's endpoints, stops receiving new requests.

    Kubernetes marks a terminating pod not ready at once; kube-proxy and the load balancer's health check
    (``externalTrafficPolicy: Local``) take some seconds to stop sending. Only then does SIGTERM reach vLLM,
    which finishes what it has (``--shutdown-timeout``) instead of aborting it.
    """
    if prestop_sleep_seconds <= 0:
        return None
    return k8s.core.v1.LifecycleArgs(pre_stop=k8s.core.v1.LifecycleHandlerArgs(
        exec_=k8s.core.v1.ExecActionArgs(command=["sleep", str(prestop_sleep_seconds)])))


def container_security_context(run_as_user: Optional[int]) -> k8s.core.v1.SecurityContextArgs:
    """No privilege escalation, no capabilities; non-root when the image has a non-root user."""
    non_root = run_as_user is not None
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        run_as_non_root=True if non_root else None,
        run_as_user=run_as_user,
        run_as_group=run_as_user,
    )


def _ingress_ip(status) -> Optional[str]:
    lb = getattr(status, "load_balancer", None) if status is not None else None
    ingress = getattr(lb, "ingress", None) if lb is not None else None
    if not ingress:
        return None
    return getattr(ingress[0], "ip", None) or getattr(ingress[0], "hostname", None)
