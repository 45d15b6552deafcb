"""CustomMetricsAdapter under the mock engine: objects, RBAC, APIServices, IAM, pinned image, schemas."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml

from components.gke_cluster import GkeCluster, GkeClusterArgs, NodePoolSpec
from components.metrics_adapter import DEFAULT_ADAPTER_IMAGE, CustomMetricsAdapter, CustomMetricsAdapterArgs
from offline.manifests import write_kubernetes_manifests
from offline.mocks import MOCK_PROJECT_NUMBER
from offline.runner import run_under_mocks
from stacks.catalog.gke import gke_hardware

PRINCIPAL = ("principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/"
             "mock-project.svc.id.goog/subject/ns/custom-metrics/sa/custom-metrics-stackdriver-adapter")


def run_adapter(**overrides):
    def program():
        cluster = GkeCluster("gke", GkeClusterArgs(
            project="mock-project", location="us-east5-b", cluster_name="llm-dev-gke", hardware=gke_hardware(),
            node_pools={"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_max_node_count=2)}))
        args = dict(provider=cluster.provider, project="mock-project", project_number=MOCK_PROJECT_NUMBER,
                    labels={"environment": "dev"})
        args.update(overrides)
        CustomMetricsAdapter("cma", CustomMetricsAdapterArgs(**args))

    return run_under_mocks(program)


@pytest.fixture(scope="module")
def adapter():
    return run_adapter()


def by_kind(result, kind):
    return {r.inputs["metadata"]["name"]: r for r in result.registrations
            if r.type.startswith("kubernetes:") and r.type.endswith(f":{kind}")}


def test_objects(adapter):
    expected = {
        "Namespace": {"custom-metrics"},
        "ServiceAccount": {"custom-metrics-stackdriver-adapter"},
        "ClusterRoleBinding": {"custom-metrics:system:auth-delegator", "custom-metrics-resource-reader",
                               "external-metrics-reader"},
        "RoleBinding": {"custom-metrics-auth-reader"},
        "ClusterRole": {"custom-metrics-resource-reader", "external-metrics-reader"},
        "Deployment": {"custom-metrics-stackdriver-adapter"},
        "Service": {"custom-metrics-stackdriver-adapter"},
        "APIService": {"v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io",
                       "v1beta1.external.metrics.k8s.io"},
    }
    for kind, names in expected.items():
        assert set(by_kind(adapter, kind)) == names, f"{kind}: got {sorted(by_kind(adapter, kind))}, expected {sorted(names)}"
    provider = adapter.named("gke-k8s").urn
    for r in adapter.registrations:
        if r.type.startswith("kubernetes:"):
            assert r.provider.startswith(provider + "::"), f"{r.name}: not on the cluster's provider ({r.provider})"


def test_rbac(adapter):
    bindings = by_kind(adapter, "ClusterRoleBinding")
    subject = {"kind": "ServiceAccount", "name": "custom-metrics-stackdriver-adapter", "namespace": "custom-metrics"}
    delegator = bindings["custom-metrics:system:auth-delegator"].inputs
    assert delegator["roleRef"]["name"] == "system:auth-delegator" and delegator["subjects"] == [subject], delegator
    reader = by_kind(adapter, "RoleBinding")["custom-metrics-auth-reader"].inputs
    assert reader["metadata"]["namespace"] == "kube-system", reader["metadata"]
    assert reader["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                 "name": "extension-apiserver-authentication-reader"}, reader["roleRef"]
    rules = by_kind(adapter, "ClusterRole")["custom-metrics-resource-reader"].inputs["rules"]
    assert {"pods", "nodes", "namespaces"} <= set(rules[0]["resources"]), f"custom-metrics-resource-reader: {rules}"
    assert set(rules[0]["verbs"]) == {"get", "list", "watch"}, f"custom-metrics-resource-reader: {rules}"
    hpa = bindings["external-metrics-reader"].inputs
    assert hpa["subjects"] == [{"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler",
                                "namespace": "kube-system"}], f"external-metrics-reader: {hpa['subjects']}"


def test_api_services(adapter):
    services = by_kind(adapter, "APIService")
    expected = {"v1beta1.custom.metrics.k8s.io": ("custom.metrics.k8s.io", "v1beta1"),
                "v1beta2.custom.metrics.k8s.io": ("custom.metrics.k8s.io", "v1beta2"),
                "v1beta1.external.metrics.k8s.io": ("external.metrics.k8s.io", "v1beta1")}
    for name, (group, version) in expected.items():
        spec = services[name].inputs["spec"]
        assert (spec["group"], spec["version"]) == (group, version), f"APIService {name}: {spec}"
        assert spec["service"] == {"name": "custom-metrics-stackdriver-adapter", "namespace": "custom-metrics",
                                   "port": 443}, f"APIService {name}: {spec['service']}"
        assert services[name].inputs["apiVersion"] == "apiregistration.k8s.io/v1", services[name].inputs["apiVersion"]


def test_deployment_and_service(adapter):
    deployment = adapter.named("cma-deployment").inputs["spec"]
    pod = deployment["template"]["spec"]
    assert pod["serviceAccountName"] == "custom-metrics-stackdriver-adapter", f"cma-deployment: {pod}"
    (c,) = pod["containers"]
    assert c["image"] == DEFAULT_ADAPTER_IMAGE, f"cma-deployment: image {c['image']}"
    assert re.fullmatch(r"gcr\.io/gke-release/custom-metrics-stackdriver-adapter:v\d+\.\d+\.\d+-gke\.\d+", c["image"]), c["image"]
    assert "--use-new-resource-model=true" in c["command"], f"cma-deployment: {c['command']}"
    service = adapter.named("cma-service").inputs["spec"]
    assert service["ports"] == [{"port": 443, "targetPort": 6443, "protocol": "TCP"}], f"cma-service: {service['ports']}"
    assert "--secure-port=6443" in c["command"], f"cma-deployment serves elsewhere than the Service targets: {c['command']}"
    assert service["selector"] == deployment["selector"]["matchLabels"], "cma-service selects other pods than cma-deployment"


def test_adapter_pod_is_hardened_and_probed(adapter):
    pod = adapter.named("cma-deployment").inputs["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                                      "seccompProfile": {"type": "RuntimeDefault"}}, f"cma-deployment: {pod['securityContext']}"
    (c,) = pod["containers"]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}, f"cma-deployment: {c['securityContext']}"
    # A read-only root needs somewhere for the self-signed serving certificate.
    assert "--cert-dir=/tmp/certs" in c["command"] and {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}, f"cma-deployment {probe}: {c.get(probe)}"
    assert c["resources"]["requests"] == c["resources"]["limits"], "cma-deployment: not Guaranteed QoS"
    policy = adapter.named("cma-network-policy").inputs["spec"]
    assert policy["podSelector"]["matchLabels"] == adapter.named("cma-deployment").inputs["spec"]["selector"]["matchLabels"]
    assert policy["ingress"] == [{"ports": [{"port": 6443, "protocol": "TCP"}]}], f"cma-network-policy: {policy}"


def test_monitoring_viewer_for_the_adapter_only(adapter):
    grants = [r for r in adapter.of_type("gcp:projects/iAMMember:IAMMember") if r.name.startswith("cma-")]
    assert len(grants) == 1, f"adapter grants: {[g.name for g in grants]}"
    assert grants[0].inputs == {"project": "mock-project", "role": "roles/monitoring.viewer", "member": PRINCIPAL}, \
        f"{grants[0].name}: {grants[0].inputs}"


@pytest.mark.parametrize("image, needle", [
    ("gcr.io/gke-release/custom-metrics-stackdriver-adapter:latest", "latest"),
    ("gcr.io/gke-release/custom-metrics-stackdriver-adapter", "without a tag"),
])
def test_unpinned_image_rejected(image, needle):
    with pytest.raises(ValueError) as caught:
        run_adapter(image=image)
    message = str(caught.value)
    assert "CustomMetricsAdapter 'cma'" in message and needle in message and "image" in message, message


def test_manifests_validate(adapter, tmp_path):
    paths = write_kubernetes_manifests(adapter.registrations, tmp_path)
    assert len(paths) == 14, f"expected 14 adapter objects, wrote {sorted(p.name for p in paths)}"
    for path in paths:
        obj = yaml.safe_load(path.read_text())
        try:
            kubernetes_validate.validate(obj, "1.33.0", strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name}: {error}")
