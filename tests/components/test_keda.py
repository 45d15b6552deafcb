"""KedaInstall and ScaleToZero under the mock engine: every KEDA object against its published CRD
schema, the Helm values against the charts' published values schemas, and the wake-up path's
wiring (interceptor -> vLLM Service -> Deployment at min 0, no HPA of our own)."""

from __future__ import annotations

import dataclasses

import pulumi
import pytest

from components.hpa_behavior import HpaBehavior
from components.keda import HttpAddOnValues, InterceptorValues, KedaInstall, KedaInstallArgs, prometheus_query_url
from components.keda_scaling import PrometheusQueueTrigger, ScaleToZero, ScaleToZeroArgs
from offline.manifests import manifest_of
from offline.runner import run_under_mocks
from tests.components.published_schemas import crd_problems, values_problems
from tests.components.test_gke_workload import run_tutorial

RELEASE = "kubernetes:helm.sh/v3:Release"
KEDA_KINDS = {"ScaledObject", "HTTPScaledObject", "ClusterTriggerAuthentication"}


def run_keda(queue=True, **scale_overrides):
    def program():
        from components.gke_cluster import GkeCluster, GkeClusterArgs, NodePoolSpec
        from stacks.catalog.gke import gke_hardware

        cluster = GkeCluster("gke", GkeClusterArgs(
            project="mock-project", location="us-central1-a", cluster_name="llm-dev-gke", hardware=gke_hardware(),
            node_pools={"l4": NodePoolSpec("g2-standard-8", total_min_node_count=0, total_max_node_count=2)}))
        keda = KedaInstall("keda", KedaInstallArgs(
            provider=cluster.provider, project="mock-project", project_number="123456789012",
            http_add_on_values=HttpAddOnValues(interceptor=InterceptorValues(condition_wait_seconds=1500)),
            proxy_client_namespaces=("apps",)))
        args = dict(provider=cluster.provider, namespace="llm-serving", app_name="vllm-gemma", service_port=8000,
                    max_replicas=2, idle_seconds=900, wake_timeout_seconds=1500, response_header_seconds=600,
                    interceptor_service=keda.interceptor_service, interceptor_namespace=keda.namespace,
                    interceptor_port=keda.interceptor_port, external_scaler_address=keda.external_scaler_address,
                    queue_trigger=PrometheusQueueTrigger(
                        server_address=prometheus_query_url("mock-project"),
                        query='sum(vllm:num_requests_waiting{namespace="llm-serving",job="vllm-gemma"})',
                        threshold=10, trigger_authentication=keda.trigger_authentication) if queue else None)
        args.update(scale_overrides)
        scaler = ScaleToZero("gemma-scale-to-zero", ScaleToZeroArgs(**args))
        pulumi.export("wake_url", scaler.wake_url)
        pulumi.export("hosts", list(scaler.hosts))

    return run_under_mocks(program)


@pytest.fixture(scope="module")
def keda_run():
    return run_keda()


def objects(result, kind):
    found = [m for r in result.registrations if (m := manifest_of(r)) is not None and m["kind"] == kind]
    return found


def test_every_keda_object_validates_against_its_crd(keda_run):
    seen = set()
    for r in keda_run.registrations:
        obj = manifest_of(r)
        if obj is None or obj["kind"] not in KEDA_KINDS:
            continue
        seen.add(obj["kind"])
        problems = crd_problems(obj)
        assert not problems, f"{r.name} ({obj['kind']}): {problems}"
    assert seen == KEDA_KINDS, f"KEDA objects registered: {sorted(seen)}"


def test_crd_validation_can_fail(keda_run):
    """The schema check has teeth: a misspelt field, a wrong type and the CEL port rule are refused."""
    scaled = objects(keda_run, "ScaledObject")[0]
    broken = {**scaled, "spec": {**scaled["spec"], "minReplicas": 0}}
    assert any("minReplicas" in p for p in crd_problems(broken)), crd_problems(broken)
    http = objects(keda_run, "HTTPScaledObject")[0]
    wrong_type = {**http, "spec": {**http["spec"], "scaledownPeriod": "900"}}
    assert any("scaledownPeriod" in p for p in crd_problems(wrong_type)), crd_problems(wrong_type)
    ref = dict(http["spec"]["scaleTargetRef"], portName="http")
    both = {**http, "spec": {**http["spec"], "scaleTargetRef": ref}}
    assert any("portName" in p for p in crd_problems(both)), crd_problems(both)


def test_helm_releases_pinned_and_values_match_the_charts_schemas(keda_run):
    releases = {r.inputs["name"]: r for r in keda_run.of_type(RELEASE)}
    assert set(releases) == {"keda", "keda-add-ons-http"}, f"releases: {sorted(releases)}"
    for name, r in releases.items():
        assert r.inputs["repositoryOpts"] == {"repo": "https://kedacore.github.io/charts"}, f"{r.name}: {r.inputs}"
        assert r.inputs["version"].count(".") == 2 and r.inputs["version"][0].isdigit(), \
            f"{r.name}: chart version {r.inputs['version']!r} is not pinned"
        assert r.inputs["namespace"] == "keda", f"{r.name}: namespace {r.inputs['namespace']}"
        problems = values_problems(name, r.inputs["values"])
        assert not problems, f"{r.name}: values refused by the {name} chart's values.schema.json: {problems}"
    interceptor = releases["keda-add-ons-http"].inputs["values"]["interceptor"]
    assert interceptor["replicas"]["waitTimeout"] == "1500s", f"interceptor values: {interceptor}"
    assert interceptor["replicas"]["min"] >= 1, f"the interceptor must never scale to zero: {interceptor}"


def test_values_schema_can_fail():
    """The chart schema catches what a typed value could still get wrong (a CPU limit in cores as text)."""
    values = HttpAddOnValues(interceptor=dataclasses.replace(InterceptorValues(), cpu_request="0.25")).render()
    assert any("cpu" in p for p in values_problems("keda-add-ons-http", values)), \
        "a CPU limit of '0.25' should break the chart's ResourcesType pattern"
    assert values_problems("keda", {"operator": {"serviceAccountTokens": {"mode": "sometimes"}}})


def test_wake_path_routes_through_the_interceptor(keda_run):
    wake = next(m for m in objects(keda_run, "Service") if m["metadata"]["name"] == "vllm-gemma-wake")
    assert wake["spec"]["type"] == "ExternalName", f"vllm-gemma-wake: {wake['spec']}"
    assert wake["spec"]["externalName"] == "keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local", \
        f"vllm-gemma-wake points at {wake['spec']['externalName']!r}, not the interceptor's proxy Service"
    http = objects(keda_run, "HTTPScaledObject")[0]
    url_host = keda_run.outputs["wake_url"].value.split("//", 1)[1].split(":")[0]  # matched without the port
    assert url_host in http["spec"]["hosts"], \
        f"HTTPScaledObject hosts {http['spec']['hosts']} do not route the wake URL's Host {url_host!r}"
    assert http["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm-gemma",
                                              "service": "vllm-gemma", "port": 8000}, http["spec"]["scaleTargetRef"]
    assert http["spec"]["timeouts"] == {"conditionWait": "1500s", "responseHeader": "600s"}, http["spec"]


def test_one_scaled_object_owns_the_replicas_from_zero(keda_run):
    http = objects(keda_run, "HTTPScaledObject")[0]
    assert http["metadata"]["annotations"] == {"httpscaledobject.keda.sh/skip-scaledobject-creation": "true"}, \
        "the add-on would create a second ScaledObject for the Deployment, which KEDA's webhook refuses"
    scaled = objects(keda_run, "ScaledObject")
    assert len(scaled) == 1, f"ScaledObjects: {[s['metadata']['name'] for s in scaled]}"
    spec = scaled[0]["spec"]
    assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] == 2, spec
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm-gemma"}, spec
    triggers = {t["type"]: t for t in spec["triggers"]}
    assert triggers["external-push"]["metadata"] == {"scalerAddress": "keda-add-ons-http-external-scaler.keda:9090",
                                                     "httpScaledObject": "vllm-gemma"}, triggers
    prometheus = triggers["prometheus"]
    assert prometheus["metadata"]["serverAddress"] == \
        "https://monitoring.googleapis.com/v1/projects/mock-project/location/global/prometheus", prometheus
    assert prometheus["authenticationRef"] == {"kind": "ClusterTriggerAuthentication", "name": "gcp-workload-identity"}
    auth = objects(keda_run, "ClusterTriggerAuthentication")[0]
    assert auth["metadata"]["name"] == "gcp-workload-identity" and auth["spec"] == {"podIdentity": {"provider": "gcp"}}


def test_operator_reads_managed_prometheus_by_workload_identity(keda_run):
    grant = keda_run.named("keda-operator-monitoring-viewer")
    assert grant.inputs["role"] == "roles/monitoring.viewer", grant.inputs
    assert grant.inputs["member"] == ("principal://iam.googleapis.com/projects/123456789012/locations/global/"
                                      "workloadIdentityPools/mock-project.svc.id.goog/subject/ns/keda/sa/keda-operator"), \
        f"keda-operator-monitoring-viewer: {grant.inputs['member']}"


def test_interceptor_fenced_by_network_policy(keda_run):
    policy = next(m for m in objects(keda_run, "NetworkPolicy") if m["metadata"]["name"] == "interceptor")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "interceptor", policy
    rules = {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}
    assert rules[8080] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}], \
        f"the proxy port admits {rules.get(8080)}, expected only namespace apps"
    assert rules[9090] == [{"podSelector": {}}], f"the admin port admits {rules.get(9090)}, expected this namespace"


def test_no_queue_trigger_means_http_only():
    result = run_keda(queue=False)
    triggers = objects(result, "ScaledObject")[0]["spec"]["triggers"]
    assert [t["type"] for t in triggers] == ["external-push"], triggers


def test_keda_hpa_gets_the_calm_behaviour_and_it_validates():
    calm = HpaBehavior(scale_up_window_seconds=225, scale_down_window_seconds=900, scale_down_period_seconds=450)
    scaled = objects(run_keda(hpa_behavior=calm), "ScaledObject")[0]
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 225, behavior
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 900, behavior
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 450}], behavior
    assert not crd_problems(scaled), crd_problems(scaled)
    # Without it, KEDA's HPA keeps Kubernetes' defaults: the object says nothing.
    assert "advanced" not in objects(run_keda(), "ScaledObject")[0]["spec"]


@pytest.mark.parametrize("overrides, needle", [
    (dict(hpa_behavior=HpaBehavior(scale_up_window_seconds=0, scale_down_window_seconds=3601,
                                   scale_down_period_seconds=60)), "scale_down_window_seconds"),
    (dict(max_replicas=0), "max_replicas"),
    (dict(wake_timeout_seconds=0), "wake_timeout_seconds"),
    (dict(app_name="Vllm"), "app_name"),
    (dict(external_scaler_address="scaler"), "external_scaler_address"),
])
def test_scale_to_zero_refuses_bad_args(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        run_keda(**overrides)


def test_workload_with_external_autoscaler_has_no_hpa_and_admits_the_interceptor():
    from components.gke_workload import PodPeer
    from components.keda import INTERCEPTOR_POD_LABELS

    peer = PodPeer(namespace="keda", match_labels=INTERCEPTOR_POD_LABELS)
    result = run_tutorial(min_replicas=0, external_autoscaler=True, load_balancer=False, allowed_pods=(peer,))
    assert not result.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler"), \
        "an HPA exists next to KEDA's ScaledObject: two autoscalers would fight over the Deployment's replicas"
    service = result.named("llama-service").inputs["spec"]
    assert service["type"] == "ClusterIP" and "externalTrafficPolicy" not in service, f"llama-service: {service}"
    assert result.named("llama-service").inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}, \
        "llama-service: Pulumi would wait for endpoints a Deployment at zero replicas never has"
    sources = result.named("llama-network-policy").inputs["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
            "podSelector": {"matchLabels": dict(INTERCEPTOR_POD_LABELS)}} in sources, \
        f"llama-network-policy does not admit the interceptor: {sources}"
    with pytest.raises(ValueError, match="min_replicas"):
        run_tutorial(min_replicas=0)
