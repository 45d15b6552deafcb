"""Whole-program tests: each committed stack file planned offline (the real program under the
mock engine, preview=False), asserting what that environment must produce; the Hugging Face
token canary; and the plan's --json document."""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest

from offline import plan as plan_module
from offline.mocks import RecordingMonitor, is_wrapped_secret, unwrap_secrets
from offline.plan import PlanResult, plan, read_stack_file, render_text
from stacks.schema import ConfigError

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "staging", "prod")

SERVICE = "gcp:projects/service:Service"
BUCKET = "gcp:storage/bucket:Bucket"
SECRET = "gcp:secretmanager/secret:Secret"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
ACCOUNT = "gcp:serviceaccount/account:Account"
CLOUD_RUN = "gcp:cloudrunv2/service:Service"
VERTEX = "gcp:vertex/aiEndpointWithModelGardenDeployment:AiEndpointWithModelGardenDeployment"
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
K8S_SECRET = "kubernetes:core/v1:Secret"
K8S_DEPLOYMENT = "kubernetes:apps/v1:Deployment"

BASE_LABELS = ("managed-by", "app", "environment")


class Planned:
    """A plan plus the `protect` option each resource was registered with."""

    def __init__(self, result: PlanResult, protect: dict[str, bool]):
        self.result = result
        self.protect = protect
        assert result.run is not None, f"stack {result.stack}: the plan failed:\n{render_text(result)}"
        self.registrations = result.run.registrations

    def of_type(self, type_token: str):
        return [r for r in self.registrations if r.type == type_token]

    def one(self, type_token: str, name: str | None = None):
        matches = [r for r in self.of_type(type_token) if name is None or r.name == name]
        assert len(matches) == 1, \
            f"stack {self.result.stack}: expected one {type_token}{' ' + name if name else ''}, got {[r.name for r in matches]}"
        return matches[0]


def plan_values(values: dict[str, Any], secret_keys: set[str], stack: str, source: str) -> Planned:
    """Plan, recording the `protect` option from each RegisterResourceRequest (the mocks'
    MockResourceArgs does not carry resource options; the request does)."""
    protect: dict[str, bool] = {}
    original = RecordingMonitor.RegisterResource

    def recording(self, request):
        protect[request.name] = bool(request.protect)
        return original(self, request)

    RecordingMonitor.RegisterResource = recording  # type: ignore[method-assign]
    try:
        result = plan(values, secret_keys, stack=stack, source=source)
    finally:
        RecordingMonitor.RegisterResource = original  # type: ignore[method-assign]
    return Planned(result, protect)


def stack_values(stack: str) -> tuple[dict[str, Any], set[str]]:
    return read_stack_file(ROOT / f"Pulumi.{stack}.yaml")


@functools.cache
def planned(stack: str) -> Planned:
    values, secret_keys = stack_values(stack)
    return plan_values(values, secret_keys, stack, f"Pulumi.{stack}.yaml")


CANARY = "hf_CanaryTokenNeverPrinted_5c0ffee"


@functools.cache
def planned_with_token(stack: str) -> Planned:
    """The committed stack with the token given as a Pulumi secret instead of an existing secret."""
    values, secret_keys = stack_values(stack)
    values = copy.deepcopy(values)
    values.pop("llm-serving:hfTokenSecret", None)
    values["llm-serving:hfToken"] = CANARY
    return plan_values(values, set(secret_keys) | {"llm-serving:hfToken"}, stack, f"Pulumi.{stack}.yaml")


def service_names(p: Planned) -> set[str]:
    return {r.inputs["service"] for r in p.of_type(SERVICE)}


# ---------------------------------------------------------------------------
# Every committed stack.


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stack_plans_cleanly(stack: str):
    p = planned(stack)
    errors = [c.render() for c in p.result.checks if c.level == "error"]
    assert not p.result.failed and not errors, f"Pulumi.{stack}.yaml: checks failed: {errors}"
    assert p.registrations, f"Pulumi.{stack}.yaml: nothing registered"
    assert p.result.outputs["environment"] == stack


EXPECTED_APIS = {
    # cloudrun (weights streamed from the bucket copy; run: also the weights-copy job) + vertex + GKE (scaled
    # to zero), a token secret and the quota check. monitoring: the dashboard, the alert policies and the
    # Cloud Run metrics sidecar. No Cloud Build: no stack bakes weights into an image.
    "dev": {"aiplatform", "artifactregistry", "cloudquotas", "compute", "container", "iam", "monitoring", "run",
            "secretmanager", "storage"},
    # staging and prod: the same.
    "staging": {"aiplatform", "artifactregistry", "cloudquotas", "compute", "container", "iam",
                "monitoring", "run", "secretmanager", "storage"},
    "prod": {"aiplatform", "artifactregistry", "cloudquotas", "compute", "container", "iam",
             "monitoring", "run", "secretmanager", "storage"},
}


@pytest.mark.parametrize("stack", STACKS)
def test_apis_are_exactly_those_the_stack_needs(stack: str):
    p = planned(stack)
    expected = {f"{name}.googleapis.com" for name in EXPECTED_APIS[stack]}
    assert service_names(p) == expected, \
        f"Pulumi.{stack}.yaml: extra {sorted(service_names(p) - expected)}, missing {sorted(expected - service_names(p))}"
    for r in p.of_type(SERVICE):
        assert r.inputs["disableOnDestroy"] is False, f"{r.name}: disableOnDestroy {r.inputs.get('disableOnDestroy')}"
    assert sorted(p.result.outputs["apis"]) == sorted(expected), f"Pulumi.{stack}.yaml: apis output {p.result.outputs['apis']}"


@pytest.mark.parametrize("stack", STACKS)
def test_no_committed_deployment_carries_a_max_num_seqs_it_did_not_ask_for(stack: str):
    # vLLM's scheduler admits by free KV blocks; a cap the user did not set cost a third to half of the
    # throughput (README "Serving defaults"). The one exception is Llama 3.2 Vision on the Model Garden image.
    resolved = planned(stack).result.resolved
    assert resolved is not None, f"stack {stack}: nothing resolved"
    for name, d in resolved.deployments.items():
        capped = [a for a in d.container.args if a.startswith("--max-num-seqs")]
        asked = d.config.vllm.max_num_seqs is not None
        vision = d.model.architecture == "MllamaForConditionalGeneration" and d.image.server == "model-garden"
        assert not capped or asked or vision, f"stack {stack}, deployment {name}: {capped} was not asked for"


def test_gke_api_only_with_a_gke_deployment():
    values, secret_keys = stack_values("dev")
    values = copy.deepcopy(values)
    values["llm-serving:deployments"].pop("gemma-1b-gke")
    values.pop("llm-serving:gke")
    without = plan_values(values, secret_keys, "dev", "Pulumi.dev.yaml")
    assert "container.googleapis.com" not in service_names(without), "the GKE API is enabled without a GKE deployment"
    assert "container.googleapis.com" in service_names(planned("prod")), "prod has a GKE deployment but no GKE API"


FOUNDATION_TYPES = ("llm-serving:storage:ModelBucket", "llm-serving:secrets:HuggingFaceToken",
                    "llm-serving:registry:ArtifactRegistry", "llm-serving:iam:WorkloadServiceAccount")


@pytest.mark.parametrize("stack", STACKS)
def test_foundation_components_wait_for_the_apis(stack: str):
    p = planned(stack)
    api_urns = {r.urn for r in p.of_type(SERVICE)}
    components = [r for r in p.registrations if r.type in FOUNDATION_TYPES]
    assert {r.type for r in components} == set(FOUNDATION_TYPES), \
        f"Pulumi.{stack}.yaml: foundation components registered: {sorted((r.type, r.name) for r in components)}"
    for component in components:
        missing = api_urns - set(component.dependencies)
        assert not missing, f"{component.name} ({component.type}): does not wait for {sorted(missing)}"


@pytest.mark.parametrize("stack", STACKS)
def test_no_authoritative_iam_is_registered(stack: str):
    for r in planned(stack).registrations + planned_with_token(stack).registrations:
        lowered = r.type.lower()
        assert "iambinding" not in lowered and "iampolicy" not in lowered, \
            f"Pulumi.{stack}.yaml: {r.name} registers authoritative IAM ({r.type})"


def _label_fields(type_token: str) -> list[str]:
    """Top-level label inputs (camelCase) the pulumi_gcp resource class accepts."""
    _, module_path, class_name = type_token.split(":")
    module = importlib.import_module(f"pulumi_gcp.{module_path.split('/')[0]}")
    params = inspect.signature(getattr(module, class_name)._internal_init).parameters
    if "user_labels" in params:
        # Monitoring resources: `user_labels` are the resource's labels (a channel's `labels` configure it).
        return ["userLabels"]
    return [{"labels": "labels", "resource_labels": "resourceLabels"}[p] for p in params if p in ("labels", "resource_labels")]


@pytest.mark.parametrize("stack", STACKS)
def test_every_gcp_resource_that_takes_labels_carries_the_stack_labels(stack: str):
    checked = 0
    for p in (planned(stack), planned_with_token(stack)):
        for r in p.registrations:
            if not r.type.startswith("gcp:"):
                continue
            for field in _label_fields(r.type):
                labels = r.inputs.get(field) or {}
                for key in BASE_LABELS:
                    assert key in labels, f"{r.name} ({r.type}): {field} lacks {key!r}: {labels}"
                assert labels["environment"] == stack and labels["managed-by"] == "pulumi" \
                    and labels["app"] == "llm-serving", f"{r.name}: {field} {labels}"
                checked += 1
    assert checked >= 4, f"Pulumi.{stack}.yaml: only {checked} labelled resources found; the check is not looking"


@pytest.mark.parametrize("stack", STACKS)
def test_one_dedicated_service_account_per_workload(stack: str):
    p = planned(stack)
    account_ids = [r.inputs["accountId"] for r in p.of_type(ACCOUNT)]
    assert len(account_ids) == len(set(account_ids)), f"Pulumi.{stack}.yaml: account ids repeat: {account_ids}"
    # The Cloud Run service runs as its own account; its weights-copy job as another (the token reader).
    assert f"llm-{stack}-gemma-1b" in account_ids, f"Pulumi.{stack}.yaml: no runtime account for gemma-1b: {account_ids}"
    assert f"llm-{stack}-gemma-1b-copy" in account_ids, f"Pulumi.{stack}.yaml: no copy account for gemma-1b: {account_ids}"
    job = p.one("gcp:cloudrunv2/job:Job", f"llm-{stack}-gemma-1b-weights-job")
    assert job.inputs["template"]["template"]["serviceAccount"] == \
        f"llm-{stack}-gemma-1b-copy@acme-llm-{stack}.iam.gserviceaccount.com", f"{job.name}: {job.inputs['template']}"
    cloud_run = p.one(CLOUD_RUN)
    assert cloud_run.inputs["template"]["serviceAccount"] == f"llm-{stack}-gemma-1b@acme-llm-{stack}.iam.gserviceaccount.com", \
        f"{cloud_run.name}: runs as {cloud_run.inputs['template'].get('serviceAccount')}"


# ---------------------------------------------------------------------------
# dev


def test_dev_serves_gemma_on_cloud_run_l4_scaling_to_zero():
    p = planned("dev")
    svc = p.one(CLOUD_RUN, "llm-dev-gemma-1b-service")
    template = svc.inputs["template"]
    assert template["nodeSelector"] == {"accelerator": "nvidia-l4"}, f"{svc.name}: nodeSelector {template.get('nodeSelector')}"
    assert template["scaling"]["minInstanceCount"] == 0, f"{svc.name}: min instances {template['scaling']}"
    assert template["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1", f"{svc.name}: no GPU limit"
    assert svc.inputs["deletionProtection"] is False, f"{svc.name}: deletion protection in dev"
    # No max_num_seqs cap: Cloud Run lets through as many requests as vLLM's own default admits on an L4
    # (256, stacks/catalog/data/vllm_defaults.yaml), and the container gets no --max-num-seqs.
    assert template["maxInstanceRequestConcurrency"] == 256, f"{svc.name}: concurrency {template.get('maxInstanceRequestConcurrency')}"
    args = template["containers"][0]["args"]
    assert not any(str(a).startswith("--max-num-seqs") for a in args), f"{svc.name}: args {args}"


def test_cloud_run_concurrency_on_a_large_gpu_stops_at_cloud_runs_limit():
    # vLLM's own max_num_seqs is 1024 on devices of 70 GiB or more; Cloud Run takes at most 1000.
    values, secret_keys = stack_values("dev")
    values = copy.deepcopy(values)
    values["llm-serving:deployments"]["gemma-1b"]["hardware"] = {
        "acceleratorType": "nvidia-rtx-pro-6000", "cpu": "20", "memory": "80Gi"}
    p = plan_values(values, secret_keys, "dev", "Pulumi.dev.yaml")
    svc = p.one(CLOUD_RUN, "llm-dev-gemma-1b-service")
    assert p.result.resolved.deployments["gemma-1b"].fit.max_num_seqs == 1024
    assert svc.inputs["template"]["maxInstanceRequestConcurrency"] == 1000, \
        f"{svc.name}: concurrency {svc.inputs['template'].get('maxInstanceRequestConcurrency')}"


def test_dev_serves_llama_8b_on_a_vertex_l4():
    p = planned("dev")
    endpoint = p.one(VERTEX, "llm-dev-llama-8b-deployment")
    assert endpoint.inputs["huggingFaceModelId"] == "meta-llama/Llama-3.1-8B-Instruct", \
        f"{endpoint.name}: model {endpoint.inputs.get('huggingFaceModelId')}"
    machine = endpoint.inputs["deployConfig"]["dedicatedResources"]["machineSpec"]
    assert machine == {"machineType": "g2-standard-12", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1}, \
        f"{endpoint.name}: machineSpec {machine}"
    assert endpoint.inputs["location"] == "us-central1", f"{endpoint.name}: location {endpoint.inputs.get('location')}"


def test_vertex_deployment_exports_exactly_the_client_contract():
    from components.vertex import client_output_keys

    entry = planned("dev").result.run.outputs["deployments"].value["llama-8b"]
    assert sorted(entry) == sorted(client_output_keys()), \
        f"Pulumi.dev.yaml llama-8b: exported keys {sorted(entry)} differ from VertexClientOutputs {sorted(client_output_keys())}"


@pytest.mark.parametrize("delete_first", [None, True, False], ids=["unset", "true", "false"])
def test_vertex_replacement_order_follows_the_stack_key(delete_first):
    """`vertex.deleteBeforeReplace` (default off: create the new endpoint first) reaches the resource option."""
    values, secret_keys = stack_values("dev")
    values = copy.deepcopy(values)
    if delete_first is not None:
        values["llm-serving:deployments"]["llama-8b"].setdefault("vertex", {})["deleteBeforeReplace"] = delete_first
    endpoint = plan_values(values, secret_keys, "dev", "Pulumi.dev.yaml").one(VERTEX, "llm-dev-llama-8b-deployment")
    assert endpoint.options.get("deleteBeforeReplace", False) is bool(delete_first), \
        f"{endpoint.name}: vertex.deleteBeforeReplace={delete_first} gave options {endpoint.options}"
    assert "replaceOnChanges" not in endpoint.options, f"{endpoint.name}: options {endpoint.options}"


def test_adopted_vertex_endpoint_is_referenced_not_deployed():
    values, secret_keys = stack_values("dev")
    values = copy.deepcopy(values)
    llama = values["llm-serving:deployments"]["llama-8b"]
    llama["vertex"]["existingEndpoint"] = "projects/acme-llm-dev/locations/us-central1/endpoints/4455667788"
    llama["lora"] = {"adapters": {"support": "loras/support-v3"}}
    p = plan_values(values, secret_keys, "dev", "Pulumi.dev.yaml")
    assert not p.of_type(VERTEX), f"Pulumi.dev.yaml: an adopted endpoint was deployed: {[r.name for r in p.of_type(VERTEX)]}"
    grant = p.one("gcp:storage/bucketIAMMember:BucketIAMMember", "llm-dev-llama-8b-lora-reader")
    assert grant.inputs["role"] == "roles/storage.objectViewer", f"{grant.name}: role {grant.inputs['role']}"
    entry = p.result.run.outputs["deployments"].value["llama-8b"]
    assert entry["endpoint_id"] == "4455667788" and entry["managed"] is False, f"llama-8b outputs: {entry}"
    assert entry["predict_url"].endswith("/endpoints/4455667788:predict"), f"llama-8b outputs: {entry['predict_url']}"
    assert entry["lora_adapters"] == {"support": "gs://acme-llm-dev-llm-dev-models/loras/support-v3"}, entry["lora_adapters"]


def test_dev_bucket_may_be_force_destroyed_and_is_not_protected():
    p = planned("dev")
    bucket = p.one(BUCKET)
    assert bucket.inputs["forceDestroy"] is True, f"{bucket.name}: forceDestroy {bucket.inputs.get('forceDestroy')}"
    assert bucket.inputs["location"] == "US-CENTRAL1", f"{bucket.name}: not in the stack's region"
    assert p.protect[bucket.name] is False, f"{bucket.name}: protected in dev"


# ---------------------------------------------------------------------------
# staging and prod protections


def test_staging_turns_on_deletion_protection_but_not_force_destroy():
    p = planned("staging")
    bucket = p.one(BUCKET)
    assert bucket.inputs["forceDestroy"] is False, f"{bucket.name}: forceDestroy in staging"
    assert p.protect[bucket.name] is False, f"{bucket.name}: staging does not protect stateful resources"
    svc = p.one(CLOUD_RUN)
    assert svc.inputs["deletionProtection"] is True, f"{svc.name}: deletionProtection off in staging"


def test_prod_protects_the_bucket():
    p = planned("prod")
    bucket = p.one(BUCKET, "llm-prod-models-bucket")
    assert p.protect[bucket.name] is True, f"{bucket.name}: not protected in prod"
    assert bucket.inputs["forceDestroy"] is False, f"{bucket.name}: forceDestroy in prod"
    assert bucket.inputs["location"] == "EUROPE-WEST4", f"{bucket.name}: location {bucket.inputs.get('location')}"


def test_prod_turns_deletion_protection_on():
    p = planned("prod")
    svc = p.one(CLOUD_RUN, "llm-prod-gemma-1b-service")
    assert svc.inputs["deletionProtection"] is True, f"{svc.name}: deletionProtection {svc.inputs.get('deletionProtection')}"
    cluster = p.one(CLUSTER, "llm-prod-gke-cluster")
    assert cluster.inputs["deletionProtection"] is True, f"{cluster.name}: deletionProtection {cluster.inputs.get('deletionProtection')}"


def test_prod_created_token_secret_is_protected():
    p = planned_with_token("prod")
    secret = p.one(SECRET, "llm-prod-hf-token-secret")
    version = p.one(SECRET_VERSION, "llm-prod-hf-token-version")
    assert secret.inputs["deletionProtection"] is True, f"{secret.name}: deletionProtection {secret.inputs.get('deletionProtection')}"
    assert p.protect[secret.name] is True, f"{secret.name}: not protected in prod"
    assert p.protect[version.name] is True, f"{version.name}: not protected in prod"
    assert secret.inputs["replication"] == {"userManaged": {"replicas": [{"location": "europe-west4"}]}}, \
        f"{secret.name}: replication {secret.inputs.get('replication')}"


def test_dev_created_token_secret_is_not_protected():
    p = planned_with_token("dev")
    secret = p.one(SECRET, "llm-dev-hf-token-secret")
    assert secret.inputs["deletionProtection"] is False and p.protect[secret.name] is False, f"{secret.name}: protected in dev"


def test_prod_protects_the_gke_cluster():
    p = planned("prod")
    cluster = p.one(CLUSTER, "llm-prod-gke-cluster")
    assert p.protect[cluster.name] is True, f"{cluster.name}: not protected in prod"


def test_prod_runs_llama_70b_on_a_tpu_v6e_2x4_pool_with_an_hpa():
    p = planned("prod")
    cluster = p.one(CLUSTER, "llm-prod-gke-cluster")
    assert cluster.inputs["location"] == "europe-west4-a", f"{cluster.name}: location {cluster.inputs.get('location')}"
    pool = p.one(NODE_POOL, "llm-prod-gke-tpu-v6e")
    assert pool.inputs["nodeConfig"]["machineType"] == "ct6e-standard-8t", f"{pool.name}: {pool.inputs['nodeConfig']}"
    assert pool.inputs["autoscaling"]["totalMinNodeCount"] == 1 and pool.inputs["autoscaling"]["totalMaxNodeCount"] == 2, \
        f"{pool.name}: autoscaling {pool.inputs.get('autoscaling')}"
    deployment = p.one(K8S_DEPLOYMENT, "llm-prod-llama-70b-deployment")
    selector = deployment.inputs["spec"]["template"]["spec"]["nodeSelector"]
    assert selector == {"cloud.google.com/compute-class": "tpu-v6e"}, f"{deployment.name}: nodeSelector {selector}"
    # The pool is labelled and tainted for its ComputeClass, which tries it first, then Spot.
    assert pool.inputs["nodeConfig"]["labels"] == {"cloud.google.com/compute-class": "tpu-v6e"}, \
        f"{pool.name}: labels {pool.inputs['nodeConfig'].get('labels')}"
    assert pool.inputs["nodeConfig"]["taints"] == [{"key": "cloud.google.com/compute-class", "value": "tpu-v6e",
                                                     "effect": "NO_SCHEDULE"}], f"{pool.name}: taints"
    cc = p.one("kubernetes:cloud.google.com/v1:ComputeClass", "llm-prod-tpu-v6e-class-computeclass")
    priorities = cc.inputs["spec"]["priorities"]
    assert priorities[0] == {"nodepools": ["tpu-v6e"]}, f"{cc.name}: first priority {priorities[0]}"
    assert [p.get("spot") for p in priorities[1:]] == [True], f"{cc.name}: fallbacks {priorities[1:]}"
    assert all(p["tpu"] == {"type": "tpu-v6e-slice", "count": 8, "topology": "2x4"} for p in priorities[1:]), \
        f"{cc.name}: fallback shapes {priorities[1:]}"
    hpa = p.one(HPA, "llm-prod-llama-70b-hpa")
    spec = hpa.inputs["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 2), f"{hpa.name}: replicas {spec}"
    assert spec["metrics"][0]["pods"]["metric"]["name"] == "prometheus.googleapis.com|vllm:num_requests_waiting|gauge", \
        f"{hpa.name}: metric {spec['metrics']}"
    assert spec["scaleTargetRef"]["name"] == deployment.inputs["metadata"]["name"], f"{hpa.name}: scales {spec['scaleTargetRef']}"


# ---------------------------------------------------------------------------
# The token canary.


def _plain_paths(value: Any, needle: str, path: str = "") -> list[str]:
    if is_wrapped_secret(value):
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _plain_paths(v, needle, f"{path}.{k}" if path else str(k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _plain_paths(v, needle, f"{path}[{i}]")]
    return [path or "(value)"] if needle in str(value) else []


def _wrapped_paths(value: Any, needle: str, path: str = "") -> list[str]:
    if is_wrapped_secret(value):
        return [path or "(value)"] if needle in json.dumps(unwrap_secrets(value), default=str) else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _wrapped_paths(v, needle, f"{path}.{k}" if path else str(k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _wrapped_paths(v, needle, f"{path}[{i}]")]
    return []


# Where the token's value may be, always wrapped as a secret: the version that stores it, and the one
# runtime that takes the value itself (Vertex AI's access-token field). The weights-copy job reads it
# from Secret Manager by reference (tests/stacks/test_token_consumers.py lists every consumer).
TOKEN_CONSUMERS = {SECRET_VERSION, VERTEX}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_token_canary_never_appears_in_plaintext(stack: str):
    p = planned_with_token(stack)
    result = p.result
    assert CANARY not in render_text(result, verbose=True), f"Pulumi.{stack}.yaml: the token is in the text plan"
    assert CANARY not in render_text(result), f"Pulumi.{stack}.yaml: the token is in the text plan"
    assert CANARY not in json.dumps(result.as_json(), default=str), f"Pulumi.{stack}.yaml: the token is in the JSON plan"
    assert result.run is not None, f"Pulumi.{stack}.yaml: the program did not run"
    for key, output in result.run.outputs.items():
        if CANARY in json.dumps(output.value, default=str):
            assert output.secret, f"Pulumi.{stack}.yaml: stack output {key} carries the token in plaintext"
    assert CANARY not in json.dumps(result.outputs, default=str), f"Pulumi.{stack}.yaml: outputs show the token"

    carriers: dict[str, str] = {}
    for r in p.registrations:
        plain = _plain_paths(dict(r.inputs), CANARY)
        assert not plain, f"{r.name} ({r.type}): the token is in plaintext at {plain}"
        if _wrapped_paths(dict(r.inputs), CANARY):
            carriers[r.name] = r.type
    assert set(carriers.values()) <= TOKEN_CONSUMERS, f"Pulumi.{stack}.yaml: the token reaches {carriers}"
    version = p.one(SECRET_VERSION, f"llm-{stack}-hf-token-version")
    assert is_wrapped_secret(version.inputs["secretData"]) and unwrap_secrets(version.inputs["secretData"]) == CANARY, \
        f"{version.name}: secretData is not the token wrapped as a secret"
    # Llama 3.1 8B is gated: Vertex AI reads the token, wrapped.
    assert f"llm-{stack}-llama-8b-deployment" in carriers, f"Pulumi.{stack}.yaml: the Vertex endpoint lacks the token"
    if stack == "prod":
        assert not p.of_type(K8S_SECRET) or all("hf" not in r.name for r in p.of_type(K8S_SECRET)), \
            f"Pulumi.prod.yaml: a Kubernetes Secret for the token: {[r.name for r in p.of_type(K8S_SECRET)]}"


def test_token_canary_secret_resources_are_created_with_accessors():
    p = planned_with_token("dev")
    secret = p.one(SECRET, "llm-dev-hf-token-secret")
    assert secret.inputs["secretId"] == "llm-dev-hf-token", f"{secret.name}: secretId {secret.inputs.get('secretId')}"
    accessors = sorted((r for r in p.registrations if r.type == "gcp:secretmanager/secretIamMember:SecretIamMember"),
                       key=lambda r: r.name)
    # One copy job per deployment serving from the bucket: Cloud Run's gemma-1b and GKE's gemma-1b-gke.
    assert [a.name for a in accessors] == ["llm-dev-hf-token-gemma-1b-copy-accessor",
                                           "llm-dev-hf-token-gemma-1b-gke-copy-accessor"], \
        f"Pulumi.dev.yaml: token accessors {[a.name for a in accessors]}"
    for accessor, account in zip(accessors, ("gemma-1b-copy", "gemma-1b-gke-copy"), strict=True):
        assert accessor.inputs["member"] == f"serviceAccount:llm-dev-{account}@acme-llm-dev.iam.gserviceaccount.com", \
            f"{accessor.name}: member {accessor.inputs.get('member')}"


def test_existing_token_secret_is_referenced_not_created():
    p = planned("dev")
    # The GKE deployment's generated API key has its own secret; no other secret is created.
    created = [r.name for r in p.of_type(SECRET) + p.of_type(SECRET_VERSION) if "-key-" not in r.name]
    assert created == [], f"Pulumi.dev.yaml: hfTokenSecret set, yet created {created}"
    for accessor in p.of_type("gcp:secretmanager/secretIamMember:SecretIamMember"):
        assert accessor.inputs["secretId"] == "projects/acme-llm-dev/secrets/hf-token", \
            f"{accessor.name}: secretId {accessor.inputs.get('secretId')}"
    assert p.result.outputs["hf_token_secret"] == "projects/acme-llm-dev/secrets/hf-token"


# ---------------------------------------------------------------------------
# Account ids derived from deployment names.


def _cloudrun_stack(name: str) -> tuple[dict[str, Any], set[str]]:
    values = {
        "gcp:project": "acme-llm-dev",
        "gcp:region": "us-central1",
        "llm-serving:environment": "dev",
        "llm-serving:namePrefix": "llmservingab",  # 12 characters, the longest allowed
        "llm-serving:hfTokenSecret": "hf-token",  # gemma is gated
        "llm-serving:deployments": {name: {"platform": "cloudrun", "model": "google/gemma-3-1b-it",
                                           "cloudrun": {"weights": "image"}}},
    }
    return values, set()


def test_build_account_id_differs_from_runtime_account_id_at_30_characters():
    name = "gemma-abcdefghijk"  # llmservingab-gemma-abcdefghijk = 30 characters
    values, secret_keys = _cloudrun_stack(name)
    p = plan_values(values, secret_keys, "long", "Pulumi.long.yaml")
    ids = [r.inputs["accountId"] for r in p.of_type(ACCOUNT)]
    assert len(ids) == len(set(ids)), f"Pulumi.long.yaml: account ids repeat: {ids}"


def test_build_account_id_is_valid_at_29_characters():
    name = "gemma-abcdefghij"  # llmservingab-gemma-abcdefghij = 29 characters
    values, secret_keys = _cloudrun_stack(name)
    try:
        p = plan_values(values, secret_keys, "long", "Pulumi.long.yaml")
    except ConfigError:
        return  # rejected up front with the stack file and key: acceptable
    ids = [r.inputs["accountId"] for r in p.of_type(ACCOUNT)]
    assert all(not i.endswith("-") for i in ids) and len(ids) == len(set(ids)), f"Pulumi.long.yaml: account ids {ids}"


# ---------------------------------------------------------------------------
# The plan's --json document.


def test_json_plan_through_the_command_line(tmp_path, capsys):
    status = plan_module.main(["dev", "--json", "--out", str(tmp_path / "build")])
    captured = capsys.readouterr()
    assert status == 0, f"exit status {status}; stderr:\n{captured.err}"
    document = json.loads(captured.out)
    assert {"stack", "resources", "outputs", "checks"} <= set(document), f"--json keys: {sorted(document)}"
    assert document["stack"] == "dev"
    assert document["resources"], "--json: no resources"
    for resource in document["resources"]:
        assert set(resource) == {"type", "name", "parent", "inputs", "options", "invented", "changes"}, \
            f"--json resource keys: {sorted(resource)}"
    by_name = {r["name"]: r for r in document["resources"]}
    bucket = by_name["llm-dev-models-bucket"]
    assert bucket["type"] == BUCKET and bucket["parent"] == "llm-dev-models", f"--json: {bucket['type']} under {bucket['parent']}"
    assert bucket["inputs"]["forceDestroy"] is True
    assert by_name["llm-dev-models"]["parent"] == ""
    for check in document["checks"]:
        assert set(check) == {"deployment", "level", "message"}, f"--json check keys: {sorted(check)}"
        assert check["level"] in ("error", "warning", "info"), check
    assert document["outputs"]["environment"] == "dev"
    assert set(document["outputs"]["deployments"]) == {"gemma-1b", "llama-8b", "gemma-1b-gke"}
    # Only the secret is masked: the Vertex model config shows the container spec, not the (placeholder) token.
    vertex = by_name["llm-dev-llama-8b-deployment"]
    model_config = vertex["inputs"]["modelConfig"]
    assert isinstance(model_config, dict), f"--json: {vertex['name']} modelConfig is hidden whole: {model_config!r}"
    assert model_config["huggingFaceAccessToken"] == "[secret]", f"--json: {vertex['name']}: the token is not masked"
    spec = model_config["containerSpec"]
    assert spec["imageUri"].startswith("us-docker.pkg.dev/"), f"--json: {vertex['name']} image {spec['imageUri']!r}"
    assert "--model=meta-llama/Llama-3.1-8B-Instruct" in spec["args"], f"--json: {vertex['name']} args {spec['args']}"
    assert {e["name"] for e in spec["envs"]} >= {"MODEL_ID"}, f"--json: {vertex['name']} envs {spec['envs']}"
    assert {"predictRoute", "healthRoute", "sharedMemorySizeMb", "deploymentTimeout"} <= set(spec), sorted(spec)
    assert "offline-placeholder-secret" not in captured.out, "--json: the offline secret placeholder is printed"
