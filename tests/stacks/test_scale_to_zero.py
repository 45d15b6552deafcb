"""Scale to zero on GKE (`gke.scaleToZero`): the committed dev stack planned under the mock engine
sends traffic through the KEDA interceptor to a Deployment KEDA owns from zero replicas, on a node
pool that scales to zero nodes; every KEDA object of every committed stack matches its published
CRD; and the config refuses what cannot work."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from offline.manifests import manifest_of
from stacks import defaults
from stacks.config import load
from stacks.startup import deployment_start_seconds, hpa_windows
from tests.components.published_schemas import crd_problems, values_problems
from tests.stacks.test_config_errors import assert_problem
from tests.stacks.test_stacks import HPA, NODE_POOL, STACKS, plan_values, planned, stack_values

RELEASE = "kubernetes:helm.sh/v3:Release"
KEDA_KINDS = ("ScaledObject", "HTTPScaledObject", "ClusterTriggerAuthentication")
DEV_DEPLOYMENT = "gemma-1b-gke"
APP = f"vllm-{DEV_DEPLOYMENT}"


def manifests(p, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    found = [m for r in p.registrations if (m := manifest_of(r)) is not None and m["kind"] == kind]
    return [m for m in found if name is None or m["metadata"]["name"] == name]


def one(p, kind: str, name: str) -> dict[str, Any]:
    found = manifests(p, kind, name)
    assert len(found) == 1, f"stack {p.result.stack}: expected one {kind} {name}, got {len(found)}"
    return found[0]


def test_dev_turns_scale_to_zero_on():
    p = planned("dev")
    d = p.result.resolved.deployments[DEV_DEPLOYMENT]
    assert d.config.gke_options.scale_to_zero, f"Pulumi.dev.yaml: {DEV_DEPLOYMENT} does not set gke.scaleToZero"
    assert d.scaling.min_replicas == 0, f"{DEV_DEPLOYMENT}: min replicas {d.scaling.min_replicas}"
    outputs = p.result.outputs["deployments"][DEV_DEPLOYMENT]
    assert "hpa_metric" not in outputs and outputs["scale_to_zero"]["wake_url"] == outputs["in_cluster_url"], outputs


def test_dev_wake_path_routes_interceptor_to_deployment_at_min_zero():
    p = planned("dev")
    deployment = one(p, "Deployment", APP)
    service = one(p, "Service", APP)
    wake = one(p, "Service", f"{APP}-wake")
    http = one(p, "HTTPScaledObject", APP)
    scaled = one(p, "ScaledObject", APP)
    # Client -> wake Service (ExternalName) -> the interceptor's proxy Service in the keda namespace.
    assert wake["spec"]["type"] == "ExternalName" and \
        wake["spec"]["externalName"] == "keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local", wake["spec"]
    assert wake["spec"]["ports"][0]["port"] == 8080, f"{APP}-wake: ports {wake['spec']['ports']}"
    # Interceptor -> the HTTPScaledObject's route: the wake URL's Host, to the vLLM Service and its port.
    url = p.result.outputs["deployments"][DEV_DEPLOYMENT]["in_cluster_url"]
    host = url.split("//", 1)[1].split(":")[0]  # the interceptor matches the Host without its port
    assert host in http["spec"]["hosts"], f"HTTPScaledObject {APP}: hosts {http['spec']['hosts']} miss {host!r}"
    target = http["spec"]["scaleTargetRef"]
    assert target["service"] == service["metadata"]["name"], f"routes to {target['service']}, not {APP}"
    assert target["port"] in [port["port"] for port in service["spec"]["ports"]], \
        f"HTTPScaledObject {APP} routes to port {target['port']}, the Service has {service['spec']['ports']}"
    assert target["name"] == deployment["metadata"]["name"] and target["kind"] == "Deployment", target
    # The Service reaches the Deployment's pods, and only inside the cluster.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items(), (service["spec"]["selector"], labels)
    assert service["spec"]["type"] == "ClusterIP", f"Service {APP}: {service['spec']['type']}"
    # KEDA owns the replicas from zero; the stack's own HPA does not exist for it.
    assert scaled["spec"]["minReplicaCount"] == 0 and scaled["spec"]["scaleTargetRef"]["name"] == APP, scaled["spec"]
    assert "replicas" not in deployment["spec"], f"Deployment {APP} sets replicas; KEDA owns them"
    assert not [r for r in p.of_type(HPA) if APP in r.name or r.inputs["metadata"]["name"] == APP], \
        f"an HPA targets {APP} next to KEDA's ScaledObject"
    assert [t["type"] for t in scaled["spec"]["triggers"]] == ["external-push", "prometheus"], scaled["spec"]


def test_dev_keda_hpa_is_as_calm_as_the_start_estimate_says():
    # Between 1 and N replicas KEDA's HPA decides; it gets the windows a deployment without scale to zero
    # would get from the same start estimate (stacks/startup.py), not Kubernetes' 0 s up / 300 s down.
    p = planned("dev")
    d = p.result.resolved.deployments[DEV_DEPLOYMENT]
    windows = hpa_windows(deployment_start_seconds(d))
    behavior = one(p, "ScaledObject", APP)["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior == windows.spec(), f"ScaledObject {APP}: behavior {behavior}, expected {windows.spec()}"
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 600, behavior  # a start is minutes, not 300 s
    outputs = p.result.outputs["deployments"][DEV_DEPLOYMENT]["hpa_windows"]
    assert outputs["scale_down_seconds"] == windows.scale_down_window_seconds and "KEDA" in outputs["applies_to"], outputs


def test_dev_interceptor_waits_for_a_node_and_the_model():
    p = planned("dev")
    d = p.result.resolved.deployments[DEV_DEPLOYMENT]
    # A node, then the startup probe's budget (estimated from the weights unless the stack sets one).
    assert d.startup is not None
    # The node budget is twice the expected node time (startup.yaml's 300 s): 600 s.
    assert d.startup.node_seconds * defaults.NODE_PROVISIONING_BUDGET_FACTOR == 600
    expected = 600 + d.startup.seconds
    http = one(p, "HTTPScaledObject", APP)
    assert http["spec"]["timeouts"]["conditionWait"] == f"{expected}s", http["spec"]["timeouts"]
    release = next(r for r in p.of_type(RELEASE) if r.inputs["name"] == "keda-add-ons-http")
    interceptor = release.inputs["values"]["interceptor"]
    assert interceptor["replicas"]["waitTimeout"] == f"{expected}s", interceptor
    summary = p.result.outputs["deployments"][DEV_DEPLOYMENT]["scale_to_zero"]
    assert summary["first_request_waits_seconds"] == expected, summary


def test_dev_keeps_api_key_and_network_policy_on_the_wake_path():
    p = planned("dev")
    env = one(p, "Deployment", APP)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert any(e["name"] == "VLLM_API_KEY" and "secretKeyRef" in e.get("valueFrom", {}) for e in env), \
        f"Deployment {APP}: the API key is not read from a Secret: {[e['name'] for e in env]}"
    sources = one(p, "NetworkPolicy", APP)["spec"]["ingress"][0]["from"]
    interceptor = [s for s in sources if "podSelector" in s]
    assert interceptor == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
                            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "interceptor",
                                                            "app.kubernetes.io/part-of": "keda-add-ons-http",
                                                            "app.kubernetes.io/instance": "keda-add-ons-http"}}}], \
        f"NetworkPolicy {APP}: pod sources {interceptor}"
    assert not any("ipBlock" in s for s in sources), f"NetworkPolicy {APP} admits address ranges: {sources}"
    fence = one(p, "NetworkPolicy", "interceptor")
    proxy = [rule for rule in fence["spec"]["ingress"] if rule["ports"][0]["port"] == 8080]
    assert not proxy, f"the dev interceptor admits namespaces on its proxy port: {proxy} (dev lists none)"


def test_dev_accelerator_pool_scales_to_zero_nodes():
    p = planned("dev")
    pool = p.one(NODE_POOL, "llm-dev-gke-l4")
    assert pool.inputs["autoscaling"]["totalMinNodeCount"] == 0, f"llm-dev-gke-l4: {pool.inputs['autoscaling']}"
    assert pool.inputs["initialNodeCount"] == 0, f"llm-dev-gke-l4 starts with {pool.inputs['initialNodeCount']} nodes"


@pytest.mark.parametrize("stack", STACKS)
def test_every_keda_object_of_every_stack_validates(stack: str):
    p = planned(stack)
    for kind in KEDA_KINDS:
        for obj in manifests(p, kind):
            problems = crd_problems(obj)
            assert not problems, f"stack {stack}: {kind} {obj['metadata']['name']}: {problems}"
    for release in p.of_type(RELEASE):
        problems = values_problems(release.inputs["chart"], release.inputs["values"])
        assert not problems, f"stack {stack}: {release.name}: {problems}"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_staging_and_prod_keep_their_hpa(stack: str):
    p = planned(stack)
    assert not p.of_type(RELEASE) and not manifests(p, "ScaledObject"), f"stack {stack} installs KEDA"
    assert p.of_type(HPA), f"stack {stack}: no HPA"


def _dev_with(**gke: Any) -> dict[str, Any]:
    values, _ = stack_values("dev")
    values = copy.deepcopy(values)
    values["llm-serving:deployments"][DEV_DEPLOYMENT]["gke"].update(gke)
    return values


DEP = f"llm-serving:deployments.{DEV_DEPLOYMENT}"


def test_prod_needs_an_acknowledgement():
    values = _dev_with()
    values["llm-serving:environment"] = "prod"
    values["llm-serving:bucket"] = {}
    assert_problem(values, f"{DEP}.gke.scaleToZero", "prod", "acknowledgeScaleToZeroInProd")
    values["llm-serving:deployments"][DEV_DEPLOYMENT]["gke"]["acknowledgeScaleToZeroInProd"] = True
    config = load(values, set(), source="Pulumi.prod-test.yaml", stack="prod")  # acknowledged: accepted
    assert config.deployments[DEV_DEPLOYMENT].gke_options.scale_to_zero


@pytest.mark.parametrize("gke, path, fragment", [
    ({"publicLoadBalancer": True, "acknowledgePublicEndpoint": True, "allowedCidrs": ["0.0.0.0/0"]},
     "gke.publicLoadBalancer", "cannot wake"),
    ({"allowedCidrs": ["10.128.0.0/9"]}, "gke.allowedCidrs", "cannot wake"),
    ({"scaleToZero": False, "scaleToZeroIdleSeconds": 600}, "gke.scaleToZeroIdleSeconds", "scaleToZero is false"),
    ({"namespace": "keda"}, "gke.namespace", "KEDA"),
])
def test_config_refuses_what_cannot_wake(gke, path, fragment):
    assert_problem(_dev_with(**gke), f"{DEP}.{path}", fragment)


def test_min_replicas_above_zero_contradicts_scale_to_zero():
    values = _dev_with()
    values["llm-serving:deployments"][DEV_DEPLOYMENT]["scaling"]["minReplicas"] = 1
    assert_problem(values, f"{DEP}.scaling.minReplicas", "got 1", "scaleToZero")


def test_min_replicas_zero_without_scale_to_zero_names_the_switch():
    values = _dev_with(scaleToZero=False)
    values["llm-serving:deployments"][DEV_DEPLOYMENT]["scaling"]["minReplicas"] = 0
    assert_problem(values, f"{DEP}.scaling.minReplicas", "got 0", "gke.scaleToZero")


def test_turning_it_off_brings_the_hpa_back():
    values = _dev_with(scaleToZero=False)
    p = plan_values(values, set(), "dev", "Pulumi.dev.yaml")
    assert not p.of_type(RELEASE) and not manifests(p, "ScaledObject"), "KEDA installed with scaleToZero off"
    assert [r.inputs["metadata"]["name"] for r in p.of_type(HPA)] == [APP], [r.name for r in p.of_type(HPA)]
    assert one(p, "Service", APP)["spec"]["type"] == "LoadBalancer"


def test_gke_options_on_another_platform_are_refused():
    values, _ = stack_values("dev")
    values = copy.deepcopy(values)
    values["llm-serving:deployments"]["llama-8b"]["gke"] = {"scaleToZero": True}
    assert_problem(values, "llm-serving:deployments.llama-8b.gke", "platform gke", "platform vertex")


def test_plan_says_what_the_first_request_waits():
    p = planned("dev")
    lines = [c.render() for c in p.result.checks if "scales to zero after" in c.render()]
    assert len(lines) == 1 and "waits up to 1500 s" in lines[0], lines


def test_warns_when_the_pool_keeps_nodes():
    values, secret_keys = stack_values("dev")
    values = copy.deepcopy(values)
    values["llm-serving:gke"]["nodePools"]["l4"]["minNodes"] = 1
    p = plan_values(values, secret_keys, "dev", "Pulumi.dev.yaml")
    warnings = [c.render() for c in p.result.checks if c.level == "warning" and "minNodes 1" in c.render()]
    assert len(warnings) == 1 and "gke.nodePools.l4.minNodes" in warnings[0], [c.render() for c in p.result.checks]


def test_dev_kubernetes_objects_validate(tmp_path):
    """Built-in kinds against Kubernetes' own schemas (kubernetes-validate, strict); KEDA's against their CRDs."""
    import kubernetes_validate
    import yaml

    from offline.manifests import write_kubernetes_manifests

    checked = set()
    for path in write_kubernetes_manifests(planned("dev").registrations, tmp_path):
        obj = yaml.safe_load(path.read_text())
        if obj["kind"] in KEDA_KINDS:
            assert not crd_problems(obj), f"{path.name}: {crd_problems(obj)}"
        elif obj["kind"] != "PodMonitoring":
            try:
                kubernetes_validate.validate(obj, "1.33.0", strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{path.name}: {error}")
        checked.add(obj["kind"])
    assert {"ScaledObject", "HTTPScaledObject", "ClusterTriggerAuthentication", "Service", "NetworkPolicy",
            "Deployment", "Namespace"} <= checked, sorted(checked)
