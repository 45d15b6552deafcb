"""Secure by default, on the committed stacks: GKE endpoints need an API key, a NetworkPolicy
admits only configured clients, pods are hardened, prod is private and pinned, a public endpoint
is only ever deliberate. Each test names the resource or key path it judges."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from offline.mocks import unwrap_secrets
from offline.plan import plan
from stacks.findings import ERROR, WARNING
from stacks.schema import ConfigError
from tests.stacks.test_stacks import CLUSTER, K8S_DEPLOYMENT, K8S_SECRET, SECRET, planned, stack_values

GKE_STACKS = ("staging", "prod")
NS = "llm-serving:"
WORKLOAD = f"{NS}deployments.llama-70b"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"


def _pod(p, stack: str) -> dict:
    return p.one(K8S_DEPLOYMENT, f"llm-{stack}-llama-70b-deployment").inputs["spec"]["template"]["spec"]


@pytest.mark.parametrize("stack", GKE_STACKS)
def test_gke_endpoint_requires_an_api_key_from_secret_manager(stack: str):
    p = planned(stack)
    p.one(RANDOM_PASSWORD, f"llm-{stack}-llama-70b-key-value")
    secret = p.one(SECRET, f"llm-{stack}-llama-70b-key-secret")
    assert secret.inputs["secretId"] == f"llm-{stack}-llama-70b-api-key", f"{secret.name}: {secret.inputs}"
    k8s_secret = p.one(K8S_SECRET, f"llm-{stack}-llama-70b-api-key")
    assert list(unwrap_secrets(k8s_secret.inputs["stringData"])) == ["api_key"], k8s_secret.name
    (container,) = _pod(p, stack)["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "vllm-llama-70b-api-key", "key": "api_key"}, \
        f"llm-{stack}-llama-70b-deployment: VLLM_API_KEY {env.get('VLLM_API_KEY')}"
    assert "value" not in env["VLLM_API_KEY"]
    assert not [a for a in container["args"] if a.startswith("--api-key")], f"--api-key in argv: {container['args']}"


@pytest.mark.parametrize("stack", GKE_STACKS)
def test_api_key_value_never_appears_in_plain_inputs_or_outputs(stack: str):
    p = planned(stack)
    password = p.one(RANDOM_PASSWORD, f"llm-{stack}-llama-70b-key-value")
    # The mock engine computes the password's result; read it back through the K8s Secret input.
    k8s_secret = p.one(K8S_SECRET, f"llm-{stack}-llama-70b-api-key")
    value = unwrap_secrets(k8s_secret.inputs["stringData"])["api_key"]
    assert len(value) == password.inputs["length"] == 48, f"{password.name}: {password.inputs}"
    for resource in p.result.resources:  # what the plan prints: inputs with secrets masked
        assert value not in json.dumps(resource["inputs"]), f"{resource['name']} shows the API key outside a secret"
    assert value not in json.dumps(p.result.outputs), "the stack outputs show the API key"
    calling = p.result.outputs["deployments"]["llama-70b"]
    assert "Authorization: Bearer $(gcloud secrets versions access latest" in calling["curl_example"], calling
    assert f"--secret=llm-{stack}-llama-70b-api-key" in calling["openai_example"], calling


@pytest.mark.parametrize("stack", GKE_STACKS)
def test_network_policy_admits_the_vpc_and_prometheus_only(stack: str):
    p = planned(stack)
    policy = p.one(NETWORK_POLICY, f"llm-{stack}-llama-70b-network-policy").inputs["spec"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gmp-system"}}},
                            {"ipBlock": {"cidr": "10.128.0.0/9"}}], f"llm-{stack}-llama-70b-network-policy: {rule}"
    cluster = p.one(CLUSTER, f"llm-{stack}-gke-cluster")
    assert cluster.inputs["datapathProvider"] == "ADVANCED_DATAPATH", f"{cluster.name}: NetworkPolicy not enforced"


@pytest.mark.parametrize("stack", GKE_STACKS)
def test_vllm_pod_is_hardened_and_sized_from_the_node(stack: str):
    p = planned(stack)
    pod = _pod(p, stack)
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}, \
        f"llm-{stack}-llama-70b-deployment: {container['securityContext']}"
    # ct6e-standard-8t: 180 vCPU, 1440 GiB; one pod takes all 8 chips and requests half the node.
    assert container["resources"]["requests"] == {"google.com/tpu": "8", "cpu": "90", "memory": "720Gi"}, \
        f"llm-{stack}-llama-70b-deployment: {container['resources']}"


def test_prod_is_private_with_nat_and_staging_is_not():
    prod = planned("prod")
    cluster = prod.one(CLUSTER, "llm-prod-gke-cluster")
    assert cluster.inputs["privateClusterConfig"]["enablePrivateNodes"] is True, f"{cluster.name}: public nodes in prod"
    nat = prod.one("gcp:compute/routerNat:RouterNat", "llm-prod-gke-nat")
    assert nat.inputs["region"] == "europe-west4", f"{nat.name}: {nat.inputs}"
    staging = planned("staging").one(CLUSTER, "llm-staging-gke-cluster")
    assert "privateClusterConfig" not in staging.inputs, f"{staging.name}: private without asking"


@pytest.mark.parametrize("stack", ("dev", "staging", "prod"))
def test_every_committed_deployment_pins_its_weights(stack: str):
    values, _ = stack_values(stack)
    for name, deployment in values[f"{NS}deployments"].items():
        assert len(deployment.get("modelRevision", "")) == 40, f"Pulumi.{stack}.yaml: {name} has no modelRevision"
    resolved = planned(stack).result.resolved
    assert resolved is not None, f"Pulumi.{stack}.yaml did not resolve"
    jobs = {r.name: r for r in planned(stack).registrations if r.type == "gcp:cloudrunv2/job:Job"}
    for d in resolved.deployments.values():
        revision = d.config.model_revision
        model = next(a for a in d.container.args if a.startswith("--model="))
        if model.startswith("--model=gs://"):
            # Served from the bucket copy of that revision, which the deployment's copy job copies.
            assert model.endswith(f"/models/{d.config.model}/{revision}"), f"{d.name}: {model}"
            job = jobs[f"llm-{stack}-{d.name}-weights-job"]
            args = job.inputs["template"]["template"]["containers"][0]["args"]
            assert args[args.index("--revision") + 1] == revision, f"{job.name}: {args}"
        else:
            assert f"--revision={revision}" in d.container.args, f"{d.name}: {d.container.args}"


# ---------------------------------------------------------------------------
# Variations of the committed stacks.


def _variant(stack: str, change) -> tuple[dict[str, Any], set[str]]:
    values, secret_keys = stack_values(stack)
    values = copy.deepcopy(values)
    change(values)
    return values, set(secret_keys)


def _gke_options(values: dict[str, Any]) -> dict[str, Any]:
    return values[f"{NS}deployments"]["llama-70b"].setdefault("gke", {})


def _config_error(stack: str, change) -> str:
    values, secret_keys = _variant(stack, change)
    with pytest.raises(ConfigError) as caught:
        plan(values, secret_keys, stack=stack, source=f"Pulumi.{stack}.yaml")
    return str(caught.value)


def _checks(stack: str, change) -> list:
    values, secret_keys = _variant(stack, change)
    return plan(values, secret_keys, stack=stack, source=f"Pulumi.{stack}.yaml").checks


def test_public_load_balancer_needs_an_acknowledgement():
    text = _config_error("staging", lambda v: _gke_options(v).update(publicLoadBalancer=True, allowedCidrs=["0.0.0.0/0"]))
    assert f"{WORKLOAD}.gke.publicLoadBalancer: is true without acknowledgePublicEndpoint" in text, text


def test_public_load_balancer_in_prod_needs_the_second_acknowledgement():
    def change(v):
        _gke_options(v).update(publicLoadBalancer=True, acknowledgePublicEndpoint=True, allowedCidrs=["0.0.0.0/0"])
    text = _config_error("prod", change)
    assert "acknowledgePublicEndpointInProd: true` (a second, prod-only confirmation)" in text, text
    assert "without acknowledgePublicEndpoint" not in text


def test_public_load_balancer_without_the_key_is_refused():
    def change(v):
        _gke_options(v).update(publicLoadBalancer=True, acknowledgePublicEndpoint=True, apiKey=False,
                               allowedCidrs=["0.0.0.0/0"])
    assert "apiKey is false: anyone on the internet could call the model" in _config_error("staging", change)


def test_acknowledged_public_load_balancer_plans_with_the_key():
    def change(v):
        _gke_options(v).update(publicLoadBalancer=True, acknowledgePublicEndpoint=True,
                               acknowledgePublicEndpointInProd=True, allowedCidrs=["0.0.0.0/0"])
    values, secret_keys = _variant("prod", change)
    result = plan(values, secret_keys, stack="prod", source="Pulumi.prod.yaml")
    service = next(r for r in result.run.registrations if r.name == "llm-prod-llama-70b-service")
    assert "annotations" not in service.inputs["metadata"] or \
        "networking.gke.io/load-balancer-type" not in service.inputs["metadata"]["annotations"], service.inputs


def test_bad_client_range_names_the_key():
    text = _config_error("staging", lambda v: _gke_options(v).update(allowedCidrs=["10.128.0.1/9"]))
    assert f"{WORKLOAD}.gke.allowedCidrs: got '10.128.0.1/9'" in text, text


def test_missing_revision_is_an_error_in_prod_and_a_warning_elsewhere():
    def drop(v):
        v[f"{NS}deployments"]["llama-70b"].pop("modelRevision")
    prod = [c for c in _checks("prod", drop) if "not pinned to a commit" in c.message]
    assert [(c.deployment, c.level) for c in prod] == [("llama-70b", ERROR)], prod
    assert f"{WORKLOAD}.modelRevision" in prod[0].message
    staging = [c for c in _checks("staging", drop) if "not pinned to a commit" in c.message]
    assert [(c.deployment, c.level) for c in staging] == [("llama-70b", WARNING)], staging


DIGEST = "sha256:" + "ab" * 32
# Every image the committed prod stack runs, by the key that sets it (serving images default from the catalog).
PROD_IMAGE_KEYS = {
    f"{NS}deployments.gemma-1b.image": ("gemma-1b", "vllm/vllm-openai:v0.32.0"),
    f"{NS}deployments.llama-8b.image": ("llama-8b", "pytorch-vllm-serve:"),
    f"{NS}deployments.llama-70b.image": ("llama-70b", "vllm/vllm-tpu:v0.26.0"),
    f"{NS}gke.metricsAdapterImage": ("", "custom-metrics-stackdriver-adapter:"),
    f"{NS}monitoring.cloudRunSidecarImage": ("", "cloud-run-gmp-sidecar:"),
}


def _unacknowledge(v):
    v.pop(f"{NS}access", None)


def test_every_tag_pinned_image_is_an_error_in_prod_naming_the_file_key_and_how_to_find_its_digest():
    errors = [c for c in _checks("prod", _unacknowledge) if c.level == ERROR and "pinned by tag only" in c.message]
    for key, (deployment, image) in PROD_IMAGE_KEYS.items():
        found = [c for c in errors if c.deployment == deployment and f"set {key} in Pulumi.prod.yaml" in c.message]
        assert len(found) == 1, f"Pulumi.prod.yaml: no single digest error for {key}; errors: {[e.render() for e in errors]}"
        message = found[0].message
        assert image in message and "docker buildx imagetools inspect" in message \
            and "gcloud artifacts docker images describe" in message and "@sha256:<digest>" in message, message
    assert len(errors) == len(PROD_IMAGE_KEYS), [e.render() for e in errors]
    tpu = next(c.message for c in errors if c.deployment == "llama-70b")
    assert ("gcloud artifacts docker images describe "
            "europe-west4-docker.pkg.dev/acme-llm-prod/llm-prod-dockerhub/vllm/vllm-tpu:v0.26.0") in tpu, tpu


def test_tag_pinned_images_are_allowed_outside_prod_with_a_warning():
    found = [c for c in _checks("staging", _unacknowledge) if "pinned by tag only" in c.message]
    assert found and all(c.level == WARNING and "allowed outside prod" in c.message for c in found), \
        [c.render() for c in found]
    for key in PROD_IMAGE_KEYS:  # staging runs the same deployments
        assert any(f"set {key.replace('prod', 'staging')} in Pulumi.staging.yaml" in c.message for c in found), \
            (key, [c.render() for c in found])


def _pin_everything(v):
    from components.cloudrun import METRICS_SIDECAR_IMAGE
    from components.metrics_adapter import DEFAULT_ADAPTER_IMAGE
    from stacks.catalog import CATALOG

    _unacknowledge(v)
    deployments = v[f"{NS}deployments"]
    for name, platform in (("gemma-1b", "cloudrun"), ("llama-8b", "vertex"), ("llama-70b", "gke-tpu")):
        deployments[name]["image"] = f"{CATALOG.default_image(platform).ref}@{DIGEST}"
    v[f"{NS}gke"]["metricsAdapterImage"] = f"{DEFAULT_ADAPTER_IMAGE}@{DIGEST}"
    v.setdefault(f"{NS}monitoring", {})["cloudRunSidecarImage"] = f"{METRICS_SIDECAR_IMAGE}@{DIGEST}"


def test_images_by_digest_satisfy_prod_and_reach_the_resources():
    checks = _checks("prod", _pin_everything)
    assert not [c for c in checks if "pinned by tag only" in c.message], [c.render() for c in checks]
    values, secret_keys = _variant("prod", _pin_everything)
    result = plan(values, secret_keys, stack="prod", source="Pulumi.prod.yaml")
    assert result.run is not None, [c.render() for c in result.checks]
    adapter = next(r for r in result.run.registrations
                   if r.type == "kubernetes:apps/v1:Deployment" and "custom-metrics" in json.dumps(r.inputs.get("metadata")))
    image = adapter.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(DIGEST), f"{adapter.name}: image {image}"
    service = next(r for r in result.run.registrations if r.name == "llm-prod-gemma-1b-service")
    images = [c["image"] for c in service.inputs["template"]["containers"]]
    assert any("cloud-run-gmp-sidecar" in i and i.endswith(DIGEST) for i in images), f"{service.name}: {images}"


def test_a_support_image_pinned_to_latest_is_a_config_error_naming_the_key():
    text = _config_error("staging", lambda v: v[f"{NS}gke"].update(metricsAdapterImage="gcr.io/x/adapter:latest"))
    assert f"{NS}gke.metricsAdapterImage" in text and "latest" in text, text


def test_cloud_run_reading_weights_from_the_bucket_sees_only_its_model():
    def gcs(v):
        v[f"{NS}deployments"]["gemma-1b"]["cloudrun"]["weights"] = "gcs"
    values, secret_keys = _variant("staging", gcs)
    result = plan(values, secret_keys, stack="staging", source="Pulumi.staging.yaml")
    bucket = "acme-llm-staging-llm-staging-models"
    service_account = "serviceAccount:llm-staging-gemma-1b@acme-llm-staging.iam.gserviceaccount.com"
    grants = {r.name: r.inputs for r in result.run.registrations
              if r.type == "gcp:storage/bucketIAMMember:BucketIAMMember" and r.inputs["member"] == service_account}
    revision = values[f"{NS}deployments"]["gemma-1b"]["modelRevision"]
    cache = result.resolved.deployments["gemma-1b"].compile_cache.prefix
    assert sorted((g["role"], g["condition"]["expression"]) for g in grants.values()) == sorted([
        ("roles/storage.objectViewer", f'resource.name == "projects/_/buckets/{bucket}"'),
        ("roles/storage.objectViewer",
         f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/models/google/gemma-3-1b-it/{revision}/")'),
        # The compile-cache sidecar writes its own keyed prefix, nothing else.
        ("roles/storage.objectUser", f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{cache}")'),
    ]), grants
    assert result.outputs["deployments"]["gemma-1b"]["bucket_access"].endswith(
        f"may list object names and read objects under models/google/gemma-3-1b-it/{revision}/ only; read and write "
        f"its compile cache under {cache} only"), result.outputs["deployments"]


def test_existing_api_key_secret_is_read_not_created():
    values, secret_keys = _variant("staging", lambda v: _gke_options(v).update(apiKeySecret="team-llm-key"))
    result = plan(values, secret_keys, stack="staging", source="Pulumi.staging.yaml")
    names = [r.name for r in result.run.registrations]
    assert "llm-staging-llama-70b-key-value" not in names and "llm-staging-llama-70b-key-secret" not in names, names
    reads = [args for token, args in result.run.mocks.calls if token.endswith("getSecretVersionAccess")]
    assert {"secret": "projects/acme-llm-staging/secrets/team-llm-key"} in [
        {k: v for k, v in a.items() if k == "secret"} for a in reads], reads
    k8s_secret = next(r for r in result.run.registrations if r.name == "llm-staging-llama-70b-api-key")
    assert k8s_secret.type == K8S_SECRET
    assert "--secret=team-llm-key --project=acme-llm-staging" in result.outputs["deployments"]["llama-70b"]["api_key_command"]


def test_api_key_can_be_turned_off_with_a_warning():
    checks = _checks("staging", lambda v: _gke_options(v).update(apiKey=False))
    assert any(c.level == WARNING and "gke.apiKey is false" in c.message for c in checks), checks


def test_plan_text_shows_the_security_settings():
    from offline.plan import render_text

    text = render_text(planned("prod").result)
    for line in ("datapathProvider = ADVANCED_DATAPATH", "privateClusterConfig.enablePrivateNodes = true",
                 'condition.expression = resource.name == "projects/_/buckets/acme-llm-prod-llm-prod-models"',
                 "Policy pack (policies/config/prod.json):\n  no violations"):
        assert line in text, f"the prod plan does not show {line!r}"


def test_private_cluster_without_authorized_networks_is_warned_about():
    open_plane = [c for c in planned("prod").result.checks if "control plane answers any address" in c.message]
    assert [(c.deployment, c.level) for c in open_plane] == [("", WARNING)], open_plane
    limited = _checks("prod", lambda v: v[f"{NS}gke"].update(masterAuthorizedNetworks=["203.0.113.0/24"]))
    assert not [c for c in limited if "control plane answers any address" in c.message]
    cluster = next(r for r in plan(*_variant("prod", lambda v: v[f"{NS}gke"].update(
        masterAuthorizedNetworks=["203.0.113.0/24"])), stack="prod", source="Pulumi.prod.yaml").run.registrations
        if r.type == CLUSTER)
    assert cluster.inputs["masterAuthorizedNetworksConfig"]["cidrBlocks"] == [
        {"cidrBlock": "203.0.113.0/24", "displayName": "authorized-0"}], cluster.inputs
