"""KEDA and its HTTP add-on on a GKE cluster, installed once per cluster for scale to zero.

Children of one ``llm-serving:gke:KedaInstall``, all on the Kubernetes provider given in the Args:

- the ``keda`` Namespace;
- two Helm releases from the pinned charts of ``https://kedacore.github.io/charts``: ``keda`` (the
  operator, which owns a scaled Deployment's replicas through the HPA it creates, and scales it
  between 0 and 1 itself) and ``keda-add-ons-http`` (the interceptor, a proxy that buffers requests
  while the Deployment has no replica and reports how many wait, and the external scaler that
  passes that count to KEDA). Their values are typed below and rendered once, never loose dicts;
- a NetworkPolicy on the interceptor pods: the proxy port admits only the namespaces the scaled
  deployments admit (the interceptor forwards to them, so it must not widen who reaches a model),
  the admin port only pods of the ``keda`` namespace (the external scaler reads pending counts);
- a ClusterTriggerAuthentication with GCP pod identity, so a ScaledObject's Prometheus trigger
  queries Managed Service for Prometheus as the KEDA operator's Kubernetes service account, which is
  granted ``roles/monitoring.viewer`` on the project through Workload Identity Federation (no
  Google service account, no key). KEDA docs, Prometheus scaler, "Google Managed Service for
  Prometheus": https://keda.sh/docs/2.20/scalers/prometheus/ (Monitoring Viewer, serverAddress
  ``https://monitoring.googleapis.com/v1/projects/<project>/location/global/prometheus``); the GMP
  docs, "Horizontal Pod Autoscaling (HPA)", section "Use KEDA":
  https://cloud.google.com/stackdriver/docs/managed-prometheus/hpa.

Per-deployment objects (HTTPScaledObject, ScaledObject, the wake Service) are in
``components/keda_scaling.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.rules import dns_label_problem

TYPE_TOKEN = "llm-serving:gke:KedaInstall"

CHART_REPOSITORY = "https://kedacore.github.io/charts"
# Chart versions follow the application's (kedacore/charts keda/Chart.yaml and http-add-on/Chart.yaml:
# version == appVersion). KEDA v2.20.2 (kedacore/keda tag v2.20.2) and the HTTP add-on v0.15.0
# (kedacore/http-add-on tag v0.15.0): the releases whose CRDs the tests validate every object against.
KEDA_CHART_VERSION = "2.20.2"
HTTP_ADD_ON_CHART_VERSION = "0.15.0"
NAMESPACE = "keda"
KEDA_RELEASE = "keda"
HTTP_ADD_ON_RELEASE = "keda-add-ons-http"
# Names and ports the HTTP add-on chart gives its services: "<chart name>-<service>" with the chart's
# defaults interceptor.proxy.service "interceptor-proxy", scaler.service "external-scaler" and ports
# interceptor.proxy.port 8080, interceptor.admin.port 9090, scaler.grpcPort 9090 (kedacore/charts
# http-add-on/values.yaml and templates/interceptor/service-proxy.yaml).
INTERCEPTOR_SERVICE = "keda-add-ons-http-interceptor-proxy"
INTERCEPTOR_PROXY_PORT = 8080
INTERCEPTOR_ADMIN_PORT = 9090
EXTERNAL_SCALER_SERVICE = "keda-add-ons-http-external-scaler"
EXTERNAL_SCALER_PORT = 9090
# Labels of the interceptor pods (templates/interceptor/deployment.yaml and _helpers.tpl matchLabels).
INTERCEPTOR_POD_LABELS = {"app.kubernetes.io/component": "interceptor",
                          "app.kubernetes.io/part-of": HTTP_ADD_ON_RELEASE,
                          "app.kubernetes.io/instance": HTTP_ADD_ON_RELEASE}
# The KEDA chart's operator service account (keda/values.yaml serviceAccount.operator.name): the
# identity that runs scalers, so the one granted read access to Managed Service for Prometheus.
OPERATOR_SERVICE_ACCOUNT = "keda-operator"
GCP_TRIGGER_AUTH = "gcp-workload-identity"
MONITORING_READER_ROLE = "roles/monitoring.viewer"

def duration(seconds: int) -> str:
    """A Go duration such as the interceptor's timeouts take, in whole seconds (``1500s``)."""
    return f"{int(seconds)}s"


@dataclass(frozen=True)
class HelmChart:
    """A chart pinned by exact version in a named repository."""

    name: str
    version: str
    repository: str = CHART_REPOSITORY


@dataclass(frozen=True)
class KedaValues:
    """Values of the ``keda`` chart this stack sets (the rest keep the chart's defaults)."""

    install_crds: bool = True  # the chart installs the keda.sh CRDs of its own version
    watch_namespace: str = ""  # "" = every namespace (scaled deployments live in their own)
    http_timeout_ms: int = 3000  # KEDA's timeout for scaler HTTP calls (the Prometheus query)

    def render(self) -> dict[str, Any]:
        return {"crds": {"install": self.install_crds}, "watchNamespace": self.watch_namespace,
                "httpTimeout": self.http_timeout_ms}


@dataclass(frozen=True)
class InterceptorValues:
    """The interceptor's replicas and timeouts (``interceptor.*`` of the ``keda-add-ons-http`` chart)."""

    min_replicas: int = 1  # the interceptor itself never scales to zero: it is the wake-up path
    max_replicas: int = 3
    # KEDA_CONDITION_WAIT_TIMEOUT: how long a request waits for the backend to have a replica. Set from
    # the slowest scaled deployment's wake-up estimate (node provisioning + start-up).
    condition_wait_seconds: int = 20
    # KEDA_RESPONSE_HEADER_TIMEOUT: from forwarding to the first response header (a whole
    # non-streamed completion on vLLM).
    response_header_seconds: int = 600
    cpu_request: str = "250m"
    memory_request: str = "128Mi"
    memory_limit: str = "512Mi"

    def render(self) -> dict[str, Any]:
        return {
            "replicas": {"min": self.min_replicas, "max": self.max_replicas,
                         "waitTimeout": duration(self.condition_wait_seconds)},
            "responseHeaderTimeout": duration(self.response_header_seconds),
            "proxy": {"port": INTERCEPTOR_PROXY_PORT},
            "admin": {"port": INTERCEPTOR_ADMIN_PORT},
            "resources": {"requests": {"cpu": self.cpu_request, "memory": self.memory_request},
                          "limits": {"cpu": self.cpu_request, "memory": self.memory_limit}},
        }


@dataclass(frozen=True)
class HttpAddOnValues:
    """Values of the ``keda-add-ons-http`` chart this stack sets."""

    interceptor: InterceptorValues = field(default_factory=InterceptorValues)
    install_crds: bool = True

    def render(self) -> dict[str, Any]:
        return {"crds": {"install": self.install_crds}, "interceptor": self.interceptor.render(),
                "scaler": {"grpcPort": EXTERNAL_SCALER_PORT}}


@dataclass(frozen=True, kw_only=True)
class KedaInstallArgs:
    """Inputs of ``KedaInstall``."""

    provider: k8s.Provider  # Kubernetes provider of the cluster (GkeCluster.provider)
    project: str  # the project whose Managed Service for Prometheus KEDA reads; names the WI pool
    project_number: pulumi.Input[str]  # for the operator's principal:// member
    keda_chart: HelmChart = HelmChart("keda", KEDA_CHART_VERSION)
    http_add_on_chart: HelmChart = HelmChart("keda-add-ons-http", HTTP_ADD_ON_CHART_VERSION)
    keda_values: KedaValues = field(default_factory=KedaValues)
    http_add_on_values: HttpAddOnValues = field(default_factory=HttpAddOnValues)
    # Namespaces whose pods may send requests through the interceptor: the union of what the scaled
    # deployments admit. Empty: only `kubectl port-forward` (which enters through the kubelet).
    proxy_client_namespaces: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)  # Kubernetes labels on the objects created here


def validate_args(args: KedaInstallArgs) -> list[str]:
    p: list[str] = []
    for chart in (args.keda_chart, args.http_add_on_chart):
        if not re.fullmatch(r"\d+\.\d+\.\d+", chart.version):
            p.append(f"{chart.name} chart: version {chart.version!r} is not an exact x.y.z version; pin one")
        if not chart.repository.startswith("https://"):
            p.append(f"{chart.name} chart: repository {chart.repository!r} is not an https:// URL")
    interceptor = args.http_add_on_values.interceptor
    if interceptor.min_replicas < 1:
        p.append(f"http_add_on_values.interceptor.min_replicas: got {interceptor.min_replicas}; the interceptor is "
                 "the wake-up path and must keep at least 1 replica")
    if interceptor.max_replicas < interceptor.min_replicas:
        p.append(f"http_add_on_values.interceptor.max_replicas: got {interceptor.max_replicas}, below min_replicas "
                 f"{interceptor.min_replicas}")
    for name in ("condition_wait_seconds", "response_header_seconds"):
        if getattr(interceptor, name) < 1:
            p.append(f"http_add_on_values.interceptor.{name}: got {getattr(interceptor, name)}; give 1 or more seconds")
    for namespace in args.proxy_client_namespaces:
        problem = dns_label_problem(namespace)
        if problem:
            p.append(f"proxy_client_namespaces: {problem}")
    return p


class KedaInstall(pulumi.ComponentResource):
    """KEDA and the KEDA HTTP add-on, pinned, with the interceptor fenced in and GMP access for scalers."""

    namespace: str
    interceptor_service: str
    interceptor_port: int
    external_scaler_address: str
    trigger_authentication: str
    operator_principal: pulumi.Output[str]

    def __init__(self, name: str, args: KedaInstallArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        problems = validate_args(args)
        if problems:
            raise ValueError(f"KedaInstall {name!r}: " + "; ".join(problems))
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        labels = {**args.labels, "app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "llm-serving"}

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE, labels={**labels, "app.kubernetes.io/component": "namespace"}),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(delete_before_replace=True)),
        )
        in_ns = pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace]))

        # Read access to Managed Service for Prometheus for the operator's Kubernetes service account.
        self.operator_principal = pulumi.Output.concat(
            "principal://iam.googleapis.com/projects/", args.project_number,
            "/locations/global/workloadIdentityPools/", args.project,
            ".svc.id.goog/subject/ns/", NAMESPACE, "/sa/", OPERATOR_SERVICE_ACCOUNT,
        )
        reader = gcp.projects.IAMMember(
            f"{name}-operator-monitoring-viewer",
            project=args.project,
            role=MONITORING_READER_ROLE,
            member=self.operator_principal,
            opts=pulumi.ResourceOptions(parent=self),
        )

        keda = _release(f"{name}-keda", KEDA_RELEASE, args.keda_chart, args.keda_values.render(),
                        pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[reader])))
        # The add-on's operator creates ScaledObjects: KEDA's CRDs must exist first.
        http_add_on = _release(f"{name}-http-add-on", HTTP_ADD_ON_RELEASE, args.http_add_on_chart,
                               args.http_add_on_values.render(),
                               pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[keda])))
        self.releases = (keda, http_add_on)

        proxy_sources = [k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels={"kubernetes.io/metadata.name": ns})) for ns in args.proxy_client_namespaces]
        ingress = [k8s.networking.v1.NetworkPolicyIngressRuleArgs(
            # The external scaler, in this namespace, polls each interceptor's pending-request counts.
            from_=[k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs())],
            ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=INTERCEPTOR_ADMIN_PORT, protocol="TCP")],
        )]
        if proxy_sources:
            ingress.append(k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                from_=proxy_sources,
                ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=INTERCEPTOR_PROXY_PORT, protocol="TCP")],
            ))
        k8s.networking.v1.NetworkPolicy(
            f"{name}-interceptor-network-policy",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="interceptor", namespace=NAMESPACE, labels=labels),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(INTERCEPTOR_POD_LABELS)),
                policy_types=["Ingress"],
                ingress=ingress,
            ),
            opts=in_ns,
        )

        k8s.apiextensions.CustomResource(
            f"{name}-gcp-trigger-auth",
            api_version="keda.sh/v1alpha1",
            kind="ClusterTriggerAuthentication",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GCP_TRIGGER_AUTH, labels=labels),
            spec={"podIdentity": {"provider": "gcp"}},
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[keda])),
        )

        self.namespace = NAMESPACE
        self.interceptor_service = INTERCEPTOR_SERVICE
        self.interceptor_port = INTERCEPTOR_PROXY_PORT
        self.external_scaler_address = f"{EXTERNAL_SCALER_SERVICE}.{NAMESPACE}:{EXTERNAL_SCALER_PORT}"
        self.trigger_authentication = GCP_TRIGGER_AUTH
        self.register_outputs({
            "namespace": self.namespace,
            "interceptor_service": self.interceptor_service,
            "interceptor_port": self.interceptor_port,
            "external_scaler_address": self.external_scaler_address,
            "trigger_authentication": self.trigger_authentication,
            "operator_principal": self.operator_principal,
        })


def prometheus_query_url(project: str) -> str:
    """Managed Service for Prometheus' Prometheus HTTP API for a project (GMP docs, "Query using the
    Prometheus HTTP API": https://cloud.google.com/stackdriver/docs/managed-prometheus/query#api-prometheus)."""
    return f"https://monitoring.googleapis.com/v1/projects/{project}/location/global/prometheus"


def _release(resource_name: str, release_name: str, chart: HelmChart, values: dict[str, Any],
             opts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
    """A pinned chart as a Helm release in KEDA's namespace; ``atomic``: a failed install rolls back."""
    return k8s.helm.v3.Release(
        resource_name,
        name=release_name,
        chart=chart.name,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository),
        namespace=NAMESPACE,
        values=values,
        atomic=True,
        opts=opts,
    )
