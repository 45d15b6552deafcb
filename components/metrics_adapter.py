"""The Custom Metrics - Stackdriver Adapter, so HPAs can read Managed Prometheus metrics.

One per cluster. It serves ``custom.metrics.k8s.io`` (v1beta1, v1beta2) and
``external.metrics.k8s.io`` (v1beta1) from Cloud Monitoring; an HPA then names a metric as
``prometheus.googleapis.com|vllm:num_requests_waiting|gauge``. The objects follow the upstream
production manifest (GoogleCloudPlatform/k8s-stackdriver,
``custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model.yaml``), written
here as typed resources so each one is planned, diffed and labelled like the rest of the stack.

The pod is hardened beyond upstream: the image is a static binary on ``gcr.io/distroless/static``
(the adapter's Dockerfile), so it runs as ``nobody`` (65534) with a read-only root filesystem, no
capabilities and seccomp ``RuntimeDefault``; it therefore serves on 6443 instead of the privileged
443 (the Service keeps port 443) and writes its self-signed serving certificate to an in-memory
``/tmp``. The service-account token stays mounted: as an aggregated API server the adapter calls
the Kubernetes API (TokenReview, SubjectAccessReview, pods and nodes). Probes read ``/healthz``
and ``/readyz``, which the generic API server always allows without authorisation.

Cloud Monitoring access is ``roles/monitoring.viewer`` granted additively on the project to the
adapter's Workload Identity principal (namespace ``custom-metrics``, ServiceAccount
``custom-metrics-stackdriver-adapter``); a missing grant is the usual cause of 403s and "custom
metric not found".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from components.rules import k8s_label_problem, pinned_image_problem

TYPE_TOKEN = "llm-serving:gke:CustomMetricsAdapter"

# Upstream release pinned by the production manifest (GoogleCloudPlatform/k8s-stackdriver PR #1245, dated 2026-08-25).
DEFAULT_ADAPTER_IMAGE = "gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.16.10-gke.0"
NAMESPACE = "custom-metrics"
SERVICE_ACCOUNT = "custom-metrics-stackdriver-adapter"
APP = "custom-metrics-stackdriver-adapter"
SECURE_PORT = 6443  # unprivileged: the container runs as a non-root user without capabilities
RUN_AS_USER = 65534  # nobody; the distroless static image needs no user of its own

# (name, group, version, versionPriority) of the aggregated APIs the adapter serves.
API_SERVICES = (
    ("v1beta1.custom.metrics.k8s.io", "custom.metrics.k8s.io", "v1beta1", 100),
    ("v1beta2.custom.metrics.k8s.io", "custom.metrics.k8s.io", "v1beta2", 200),
    ("v1beta1.external.metrics.k8s.io", "external.metrics.k8s.io", "v1beta1", 100),
)


@dataclass(frozen=True)
class CustomMetricsAdapterArgs:
    """Inputs of ``CustomMetricsAdapter``."""

    provider: k8s.Provider  # Kubernetes provider of the cluster (GkeCluster.provider)
    project: str  # project of the cluster; names the Workload Identity pool
    project_number: pulumi.Input[str]  # used in the principal:// member
    image: str = DEFAULT_ADAPTER_IMAGE  # pinned adapter image (tag or digest, never :latest)
    replicas: int = 1  # adapter replicas
    cpu: str = "250m"  # request = limit, as upstream
    memory: str = "400Mi"  # request = limit, as upstream
    labels: Mapping[str, str] = field(default_factory=dict)  # extra Kubernetes labels (an invalid one is refused)
    protect: bool = False  # Pulumi protect on the namespace (deleting it takes every HPA's metrics away)


def _image_problem(image: str) -> Optional[str]:
    problem = pinned_image_problem(image)
    return f"image: {problem} (e.g. {DEFAULT_ADAPTER_IMAGE})" if problem else None


def adapter_principal(project_id: str, project_number: pulumi.Input[str]) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        "principal://iam.googleapis.com/projects/", project_number,
        "/locations/global/workloadIdentityPools/", project_id,
        ".svc.id.goog/subject/ns/", NAMESPACE, "/sa/", SERVICE_ACCOUNT,
    )


class CustomMetricsAdapter(pulumi.ComponentResource):
    """custom-metrics-stackdriver-adapter with its RBAC, APIServices and Cloud Monitoring access."""

    namespace: str
    service_account_name: str
    principal: pulumi.Output[str]

    def __init__(self, name: str, args: CustomMetricsAdapterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE_TOKEN, name, None, opts)
        problems = []
        image_problem = _image_problem(args.image)
        if image_problem:
            problems.append(image_problem)
        if args.replicas < 1:
            problems.append(f"replicas: got {args.replicas}; use 1 or more")
        if not args.project:
            problems.append("project: is required")
        problems += [f"labels: {p}" for p in (k8s_label_problem(k, v) for k, v in args.labels.items()) if p]
        if problems:
            raise ValueError(f"CustomMetricsAdapter {name!r}: " + "; ".join(problems))

        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        selector = {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": name}
        labels = {**{k: v for k, v in args.labels.items() if not k8s_label_problem(k, v)},
                  **selector, "app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "llm-serving",
                  "app.kubernetes.io/component": "metrics-adapter"}
        subject = [k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=SERVICE_ACCOUNT, namespace=NAMESPACE)]

        def meta(obj_name: str, namespace: Optional[str] = NAMESPACE) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=obj_name, namespace=namespace, labels=labels)

        ns = k8s.core.v1.Namespace(f"{name}-namespace", metadata=meta(NAMESPACE, None),
                                   opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(
                                       delete_before_replace=True, protect=args.protect)))
        in_ns = pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[ns]))
        ksa = k8s.core.v1.ServiceAccount(f"{name}-ksa", metadata=meta(SERVICE_ACCOUNT), opts=in_ns)

        # Delegated authn/authz for an aggregated API server.
        rbac = [
            k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-auth-delegator", metadata=meta("custom-metrics:system:auth-delegator", None),
                role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                                 name="system:auth-delegator"),
                subjects=subject, opts=k8s_opts),
            k8s.rbac.v1.RoleBinding(
                f"{name}-auth-reader", metadata=meta("custom-metrics-auth-reader", "kube-system"),
                role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role",
                                                 name="extension-apiserver-authentication-reader"),
                subjects=subject, opts=k8s_opts),
        ]
        # Map metrics onto pods, nodes and namespaces.
        reader = k8s.rbac.v1.ClusterRole(
            f"{name}-resource-reader", metadata=meta("custom-metrics-resource-reader", None),
            rules=[k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods", "nodes", "nodes/stats", "namespaces"],
                                              verbs=["get", "list", "watch"])],
            opts=k8s_opts)
        rbac.append(reader)
        rbac.append(k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-resource-reader-binding", metadata=meta("custom-metrics-resource-reader", None),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                             name="custom-metrics-resource-reader"),
            subjects=subject, opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[reader]))))
        # The HPA controller reads external metrics.
        external = k8s.rbac.v1.ClusterRole(
            f"{name}-external-metrics-reader", metadata=meta("external-metrics-reader", None),
            rules=[k8s.rbac.v1.PolicyRuleArgs(api_groups=["external.metrics.k8s.io"], resources=["*"],
                                              verbs=["get", "list", "watch"])],
            opts=k8s_opts)
        rbac.append(external)
        rbac.append(k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-external-metrics-reader-binding", metadata=meta("external-metrics-reader", None),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                             name="external-metrics-reader"),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name="horizontal-pod-autoscaler",
                                              namespace="kube-system")],
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[external]))))

        # Cloud Monitoring read access for exactly this ServiceAccount.
        self.principal = adapter_principal(args.project, args.project_number)
        grant = gcp.projects.IAMMember(
            f"{name}-monitoring-viewer", project=args.project, role="roles/monitoring.viewer",
            member=self.principal, opts=pulumi.ResourceOptions(parent=self))

        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(APP),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=SERVICE_ACCOUNT,
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            run_as_non_root=True, run_as_user=RUN_AS_USER, run_as_group=RUN_AS_USER,
                            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")),
                        containers=[k8s.core.v1.ContainerArgs(
                            name="pod-custom-metrics-stackdriver-adapter",
                            image=args.image,
                            image_pull_policy="Always",  # as the vLLM pods: re-resolved on each start
                            command=["/adapter", "--use-new-resource-model=true",
                                     "--fallback-for-container-metrics=true",
                                     f"--secure-port={SECURE_PORT}", "--cert-dir=/tmp/certs"],
                            ports=[k8s.core.v1.ContainerPortArgs(name="https", container_port=SECURE_PORT,
                                                                 protocol="TCP")],
                            resources=k8s.core.v1.ResourceRequirementsArgs(
                                requests={"cpu": args.cpu, "memory": args.memory},
                                limits={"cpu": args.cpu, "memory": args.memory}),
                            security_context=k8s.core.v1.SecurityContextArgs(
                                allow_privilege_escalation=False, read_only_root_filesystem=True,
                                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])),
                            readiness_probe=k8s.core.v1.ProbeArgs(
                                http_get=k8s.core.v1.HTTPGetActionArgs(path="/readyz", port="https", scheme="HTTPS"),
                                period_seconds=10, timeout_seconds=5, failure_threshold=3),
                            liveness_probe=k8s.core.v1.ProbeArgs(
                                http_get=k8s.core.v1.HTTPGetActionArgs(path="/healthz", port="https", scheme="HTTPS"),
                                initial_delay_seconds=30, period_seconds=20, timeout_seconds=5, failure_threshold=3),
                            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")],
                        )],
                        volumes=[k8s.core.v1.VolumeArgs(
                            name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory",
                                                                                       size_limit="16Mi"))],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[ksa, grant, *rbac])),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(APP),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP", selector=selector,
                ports=[k8s.core.v1.ServicePortArgs(port=443, target_port=SECURE_PORT, protocol="TCP")]),
            opts=in_ns)

        # Only the serving port is reachable; the kube-apiserver (the only client) has no pod
        # address to select, so sources are not narrowed.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=meta(APP),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                policy_types=["Ingress"],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=SECURE_PORT, protocol="TCP")])],
            ),
            opts=in_ns)

        for api_name, group, version, priority in API_SERVICES:
            k8s.apiregistration.v1.APIService(
                f"{name}-{api_name.replace('.', '-')}",
                metadata=meta(api_name, None),
                spec=k8s.apiregistration.v1.APIServiceSpecArgs(
                    group=group, version=version,
                    group_priority_minimum=100, version_priority=priority,
                    # As upstream: the adapter serves a self-signed certificate.
                    insecure_skip_tls_verify=True,
                    service=k8s.apiregistration.v1.ServiceReferenceArgs(name=APP, namespace=NAMESPACE, port=443),
                ),
                opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[service, deployment])))

        self.namespace = NAMESPACE
        self.service_account_name = SERVICE_ACCOUNT
        self.register_outputs({
            "namespace": self.namespace,
            "service_account_name": self.service_account_name,
            "principal": self.principal,
        })
