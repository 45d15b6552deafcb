"""Scale one vLLM Deployment to zero replicas when idle and wake it on the first request.

A queue metric exported by vLLM (``vllm:num_requests_waiting``) does not exist while no replica
runs, so it cannot wake a Deployment from zero. The wake-up signal here is the KEDA HTTP add-on's
interceptor: clients call the wake Service, which resolves to the interceptor; the interceptor
holds each request until the Deployment has a ready replica (up to ``wake_timeout_seconds``) and
reports how many requests wait, and KEDA scales 0 -> 1 on that count. From one replica up, the
optional Prometheus trigger on vLLM's own queue (Managed Service for Prometheus) adds replicas.

Children of one ``llm-serving:gke:ScaleToZero``, in the workload's namespace:

- ``<app>-wake``: an ExternalName Service pointing at the interceptor's proxy Service, so in-cluster
  clients have a stable name whose ``Host`` header routes to this deployment;
- an ``HTTPScaledObject`` (http.keda.sh/v1alpha1) routing those hosts to the vLLM Service and port,
  with the wake and response timeouts, and the annotation that leaves the ScaledObject to us;
- a ``ScaledObject`` (keda.sh/v1alpha1), the one owner of the Deployment's replicas: 0 to
  ``max_replicas``, triggers ``external-push`` (the interceptor's pending count, via the add-on's
  external scaler) and, when given, ``prometheus`` (vLLM's queue per replica). KEDA creates and
  owns the HPA behind it; the workload must not create its own (``VllmGkeWorkloadArgs.external_autoscaler``).
  That HPA moves replicas from 1 to N and back with the given ``hpa_behavior`` (the same windows a
  deployment without scale to zero gets, ``components/hpa_behavior.py``); 1 -> 0 is KEDA's own, after
  ``idle_seconds`` without a request.

How the two triggers combine, and the annotation: kedacore/http-add-on ``docs/ref/vX.X.X/http_scaled_object.md``
("httpscaledobject.keda.sh/skip-scaledobject-creation") and ``docs/walkthrough.md`` ("Integrating
HTTP Add-on Scaler with other KEDA scalers"); one ScaledObject per workload: KEDA's admission webhook
refuses a second one (keda.sh/docs/2.20/concepts/admission-webhooks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from components.hpa_behavior import HpaBehavior
from components.rules import dns_label_problem

TYPE_TOKEN = "llm-serving:gke:ScaleToZero"
SKIP_SCALED_OBJECT_ANNOTATION = "httpscaledobject.keda.sh/skip-scaledobject-creation"
WAKE_SUFFIX = "-wake"


@dataclass(frozen=True)
class PrometheusQueueTrigger:
    """Scale 1 -> N on a PromQL query answered by Managed Service for Prometheus."""

    server_address: str  # https://monitoring.googleapis.com/v1/projects/<project>/location/global/prometheus
    query: str  # one value, e.g. sum(vllm:num_requests_waiting{namespace="...",job="..."})
    threshold: float  # per replica (metricType AverageValue): KEDA adds replicas above it
    trigger_authentication: str  # ClusterTriggerAuthentication with GCP pod identity

    def render(self) -> dict[str, Any]:
        return {
            "type": "prometheus",
            "name": "vllm-queue",
            "metricType": "AverageValue",
            "metadata": {"serverAddress": self.server_address, "query": self.query,
                         "threshold": _number_text(self.threshold),
                         # An empty answer (no replica, no series) counts as 0, never as an error.
                         "ignoreNullValues": "true"},
            "authenticationRef": {"kind": "ClusterTriggerAuthentication", "name": self.trigger_authentication},
        }


@dataclass(frozen=True, kw_only=True)
class ScaleToZeroArgs:
    """Inputs of ``ScaleToZero``."""

    provider: k8s.Provider
    namespace: str  # the workload's namespace (HTTPScaledObject and ScaledObject must sit with it)
    app_name: str  # the Deployment and its Service (VllmGkeWorkload.service_name)
    service_port: int  # the Service port the interceptor forwards to
    max_replicas: int
    idle_seconds: int  # no request for this long: back to zero (scaledownPeriod / cooldownPeriod)
    wake_timeout_seconds: int  # how long a request waits in the interceptor for the first replica
    response_header_seconds: int  # from forwarding to the first response header
    interceptor_service: str  # KedaInstall.interceptor_service
    interceptor_namespace: str  # KedaInstall.namespace
    interceptor_port: int  # KedaInstall.interceptor_port
    external_scaler_address: str  # KedaInstall.external_scaler_address (host:port)
    queue_trigger: Optional[PrometheusQueueTrigger] = None  # 1 -> N on vLLM's queue
    hpa_behavior: Optional[HpaBehavior] = None  # how fast KEDA's HPA moves between 1 and N; None: Kubernetes' defaults
    labels: dict[str, str] = field(default_factory=dict)


def wake_service_name(app_name: str) -> str:
    return f"{app_name}{WAKE_SUFFIX}"


def wake_hosts(app_name: str, namespace: str) -> tuple[str, ...]:
    """The host names an in-cluster client may use for the wake Service. The interceptor matches the
    ``Host`` header without its port (kedacore/http-add-on pkg/routing/key.go: the request's
    ``URL.Hostname()``, and ``stripPort`` on each of ``spec.hosts``)."""
    name = wake_service_name(app_name)
    return (f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc", f"{name}.{namespace}")


def validate_args(args: ScaleToZeroArgs) -> list[str]:
    p: list[str] = []
    for fname in ("namespace", "app_name", "interceptor_namespace", "interceptor_service"):
        problem = dns_label_problem(getattr(args, fname))
        if problem:
            p.append(f"{fname}: {problem}")
    if dns_label_problem(wake_service_name(args.app_name)):
        p.append(f"app_name: {args.app_name!r} + {WAKE_SUFFIX!r} is longer than a Service name may be (63); shorten it")
    for fname in ("service_port", "interceptor_port"):
        if not 1 <= getattr(args, fname) <= 65535:
            p.append(f"{fname}: got {getattr(args, fname)}; give a port from 1 to 65535")
    if args.max_replicas < 1:
        p.append(f"max_replicas: got {args.max_replicas}; give 1 or more (a deployment that never wakes serves nothing)")
    for fname in ("idle_seconds", "wake_timeout_seconds", "response_header_seconds"):
        if getattr(args, fname) < 1:
            p.append(f"{fname}: got {getattr(args, fname)}; give 1 or more seconds")
    if ":" not in args.external_scaler_address:
        p.append(f"external_scaler_address: got {args.external_scaler_address!r}; give host:port")
    if args.hpa_behavior is not None:
        p += args.hpa_behavior.problems()
    trigger = args.queue_trigger
    if trigger is not None:
        if not trigger.server_address.startswith("https://"):
            p.append(f"queue_trigger.server_address: got {trigger.server_address!r}; give the https:// query endpoint")
        if trigger.threshold <= 0:
            p.append(f"queue_trigger.threshold: got {trigger.threshold}; give a positive value per replica")
    return p


class ScaleToZero(pulumi.ComponentResource):
    """An HTTPScaledObject and the ScaledObject that own a vLLM Deployment's replicas, from 0."""

    wake_service: str
    wake_url: str
    hosts: tuple[str, ...]
    port_forward_command: str

    def __init__(self, name: str, args: ScaleToZeroArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        problems = validate_args(args)
        if problems:
            raise ValueError(f"ScaleToZero {name!r}: " + "; ".join(problems))
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        ns = args.namespace
        labels = {**args.labels, "app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "llm-serving",
                  "app.kubernetes.io/component": "autoscaling"}
        self.wake_service = wake_service_name(args.app_name)
        interceptor_host = f"{args.interceptor_service}.{args.interceptor_namespace}.svc.cluster.local"
        self.hosts = wake_hosts(args.app_name, ns)

        k8s.core.v1.Service(
            f"{name}-wake-service",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=self.wake_service, namespace=ns, labels=labels),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ExternalName",
                external_name=interceptor_host,
                ports=[k8s.core.v1.ServicePortArgs(name="http", protocol="TCP", port=args.interceptor_port)],
            ),
            opts=k8s_opts,
        )

        http_scaled_object = k8s.apiextensions.CustomResource(
            f"{name}-http-scaled-object",
            api_version="http.keda.sh/v1alpha1",
            kind="HTTPScaledObject",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.app_name, namespace=ns, labels=labels,
                # The ScaledObject below combines the add-on's trigger with vLLM's queue; the add-on
                # must not create a second one for the same Deployment.
                annotations={SKIP_SCALED_OBJECT_ANNOTATION: "true"}),
            spec={
                "hosts": list(self.hosts),
                "pathPrefixes": ["/"],
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": args.app_name,
                                   "service": args.app_name, "port": args.service_port},
                "replicas": {"min": 0, "max": args.max_replicas},
                "scaledownPeriod": args.idle_seconds,
                "timeouts": {"conditionWait": f"{args.wake_timeout_seconds}s",
                             "responseHeader": f"{args.response_header_seconds}s"},
            },
            opts=k8s_opts,
        )

        triggers: list[dict[str, Any]] = [{
            "type": "external-push",
            "name": "pending-requests",
            "metadata": {"scalerAddress": args.external_scaler_address, "httpScaledObject": args.app_name},
        }]
        if args.queue_trigger is not None:
            triggers.append(args.queue_trigger.render())
        k8s.apiextensions.CustomResource(
            f"{name}-scaled-object",
            api_version="keda.sh/v1alpha1",
            kind="ScaledObject",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.app_name, namespace=ns, labels=labels),
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": args.app_name},
                "minReplicaCount": 0,
                "maxReplicaCount": args.max_replicas,
                "cooldownPeriod": args.idle_seconds,
                # The first replica Kubernetes starts on creation loads the model: let it finish
                # before the first scale-in to zero.
                "initialCooldownPeriod": args.wake_timeout_seconds,
                "pollingInterval": 15,
                "triggers": triggers,
                **({"advanced": {"horizontalPodAutoscalerConfig": {"behavior": args.hpa_behavior.spec()}}}
                   if args.hpa_behavior is not None else {}),
            },
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[http_scaled_object])),
        )

        port = args.interceptor_port
        self.wake_url = f"http://{self.hosts[0]}:{port}"
        self.port_forward_command = (f"kubectl -n {args.interceptor_namespace} port-forward svc/{args.interceptor_service} "
                                     f"{port}:{port}")
        self.register_outputs({
            "wake_service": self.wake_service,
            "wake_url": self.wake_url,
            "hosts": list(self.hosts),
            "port_forward_command": self.port_forward_command,
        })


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
