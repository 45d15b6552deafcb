"""The policy pack's policies, called directly with hand-built arguments (no CLI, no gRPC server).

Props go through pulumi_policy's own unknown-checking proxy, as they do at run time, so the
policies see read-only Mapping/Sequence proxies rather than dicts and lists.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from policies import guardrails as g

ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = ROOT / "policies"
LABELS = {"managed-by": "pulumi", "app": "llm-serving", "environment": "dev"}

BUCKET = "gcp:storage/bucket:Bucket"
RUN_SERVICE = "gcp:cloudrunv2/service:Service"
RUN_INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
VERTEX = "gcp:vertex/aiEndpointWithModelGardenDeployment:AiEndpointWithModelGardenDeployment"
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _urn(resource_type: str, name: str) -> str:
    return f"urn:pulumi:dev::llm-serving::{resource_type}::{name}"


def check(policy, resource_type: str, props: dict, name: str = "res", config=None, provider=None) -> list[str]:
    """Runs one resource policy; returns the violation messages."""
    violations: list[str] = []
    args = ResourceValidationArgs(resource_type, unknown_checking_proxy(props), _urn(resource_type, name),
                                  name, _opts(), provider, config)
    assert policy.validate(args, lambda message, urn=None: violations.append(message)) is None
    return violations


def resource(resource_type: str, name: str, props: dict) -> PolicyResource:
    return PolicyResource(resource_type, unknown_checking_proxy(props), _urn(resource_type, name), name,
                          _opts(), None, None, [], {})


def check_stack(policy, resources: list[PolicyResource], config=None) -> list[tuple[str, str | None]]:
    violations: list[tuple[str, str | None]] = []
    args = StackValidationArgs(resources, config)
    assert policy.validate(args, lambda message, urn=None: violations.append((message, urn))) is None
    return violations


def cloud_run(name="chat", envs=None, gpus=None, max_instances=None, **extra) -> dict:
    container = {"name": "vllm", "image": "us-docker.pkg.dev/p/r/vllm@sha256:abc", "envs": envs or []}
    if gpus:
        container["resources"] = {"limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": str(gpus)}}
    template: dict[str, Any] = {"containers": [container]}
    if max_instances is not None:
        template["scaling"] = {"maxInstanceCount": max_instances}
    return {"name": name, "location": "us-central1", "labels": LABELS, "template": template, **extra}


def vertex(count=1, accel="NVIDIA_L4", machine="g2-standard-12", max_replicas=None, min_replicas=1, envs=None):
    dedicated = {"machineSpec": {"machineType": machine, "acceleratorType": accel, "acceleratorCount": count},
                 "minReplicaCount": min_replicas}
    if max_replicas is not None:
        dedicated["maxReplicaCount"] = max_replicas
    props = {"location": "us-central1", "huggingFaceModelId": "google/gemma-3-1b-it",
             "deployConfig": {"dedicatedResources": dedicated}}
    if envs is not None:
        props["modelConfig"] = {"containerSpec": {"imageUri": "us-docker.pkg.dev/p/r/vllm:1", "envs": envs}}
    return props


def deployment(env: list[dict]) -> dict:
    return {"metadata": {"name": "vllm"},
            "spec": {"template": {"spec": {"containers": [{"name": "vllm", "image": "vllm", "env": env}]}}}}


# --------------------------------------------------------------------------- the pack itself

def test_main_is_not_imported_and_builds_the_mandatory_pack():
    assert "policies.__main__" not in sys.modules
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
    assert len(calls) == 1, "__main__.py must build exactly one PolicyPack"
    call = calls[0]
    assert isinstance(call.args[0], ast.Constant) and call.args[0].value == "llm-serving-guardrails"
    kwargs = {k.arg: k.value for k in call.keywords}
    assert ast.unparse(kwargs["enforcement_level"]) == "EnforcementLevel.MANDATORY"
    assert ast.unparse(kwargs["policies"]) == "POLICIES"


def test_pack_starts_the_way_the_cli_runs_it():
    """The CLI runs the pack directory with runpy; the pack then serves on a port it prints."""
    code = f"import runpy; runpy.run_path({str(POLICY_DIR)!r}, run_name='__main__')"
    proc = subprocess.Popen([sys.executable, "-u", "-c", code], cwd=ROOT.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(60, proc.kill)
    timer.start()
    try:
        first_line = proc.stdout.readline().strip()
    finally:
        timer.cancel()
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert first_line.isdigit(), f"pack did not start: {first_line!r}\n{stderr}"


def test_policy_names_are_unique_and_none_lowers_the_pack_level():
    names = [p.name for p in g.POLICIES]
    assert len(names) == len(set(names)) == 9
    for policy in g.POLICIES:
        assert policy.enforcement_level in (None, EnforcementLevel.MANDATORY), policy.name


def test_pack_files_pin_the_sdk_and_use_python():
    requirements = (POLICY_DIR / "requirements.txt").read_text()
    assert "pulumi-policy==1.21.0" in requirements and "pulumi==3.272.0" in requirements
    assert re.search(r"^\s*name:\s*python\s*$", (POLICY_DIR / "PulumiPolicy.yaml").read_text(), re.M)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_environment_config_matches_the_policy_schemas(env):
    config = json.loads((POLICY_DIR / "config" / f"{env}.json").read_text())
    by_name = {p.name: p for p in g.POLICIES}
    for policy_name, values in config.items():
        assert policy_name in by_name, f"{env}.json configures unknown policy {policy_name!r}"
        policy = by_name[policy_name]
        properties = dict(policy.config_schema.properties) if policy.config_schema else {}
        properties["enforcementLevel"] = {"enum": [level.value for level in EnforcementLevel]}
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        jsonschema.validate(values, schema)
    assert config["required-labels"]["environment"] == env
    assert config["prod-cluster-deletion-protection"]["environment"] == env


def test_label_paths_exist_in_the_installed_gcp_sdk():
    def snake(name: str) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()

    for token, path in g.LABEL_PATHS.items():
        module, type_name = token.split(":")[1:]
        cls = getattr(importlib.import_module(f"pulumi_gcp.{module.split('/')[0]}"), type_name)
        assert hasattr(cls, snake(path[0])), f"{token} has no {path[0]} property"


# --------------------------------------------------------------------------- no-public-invokers

def test_public_invoker_fails_and_names_the_member_and_fix():
    violations = check(g.no_public_invokers, RUN_INVOKER,
                       {"name": "chat", "role": "roles/run.invoker", "member": "allUsers"}, name="chat-public")
    assert len(violations) == 1
    assert "ServiceIamMember 'chat-public'" in violations[0]
    assert "allUsers" in violations[0] and "allowPublicInvokers" in violations[0]


def test_named_invoker_passes():
    assert check(g.no_public_invokers, RUN_INVOKER,
                 {"name": "chat", "role": "roles/run.invoker",
                  "member": "serviceAccount:gateway@p.iam.gserviceaccount.com"}) == []


@pytest.mark.parametrize("resource_type,props", [
    ("gcp:vertex/aiEndpointIamMember:AiEndpointIamMember",
     {"endpoint": "e", "role": "roles/aiplatform.user", "member": "allAuthenticatedUsers"}),
    ("gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding",
     {"name": "chat", "role": "roles/run.invoker", "members": ["group:ml@example.com", "allUsers"]}),
    ("gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy",
     {"name": "chat", "policyData": json.dumps({"bindings": [{"role": "roles/run.invoker",
                                                               "members": ["allUsers"]}]})}),
    (RUN_SERVICE, {**cloud_run(), "invokerIamDisabled": True}),
])
def test_every_way_of_going_public_fails(resource_type, props):
    violations = check(g.no_public_invokers, resource_type, props, name="ep")
    assert len(violations) == 1 and "'ep'" in violations[0]


def test_public_invoker_passes_when_the_environment_allows_it():
    assert check(g.no_public_invokers, RUN_INVOKER, {"role": "roles/run.invoker", "member": "allUsers"},
                 config={"allowPublicInvokers": True}) == []


# --------------------------------------------------------------------------- no-plaintext-tokens

def test_cloud_run_literal_hf_token_fails():
    props = cloud_run(envs=[{"name": "HF_TOKEN", "value": "hf_abc"}])
    violations = check(g.no_plaintext_tokens, RUN_SERVICE, props, name="chat")
    assert len(violations) == 1
    assert "Service 'chat'" in violations[0] and "HF_TOKEN" in violations[0]
    assert "secret_key_ref" in violations[0]


def test_cloud_run_secret_reference_and_token_counts_pass():
    props = cloud_run(envs=[
        {"name": "HUGGING_FACE_HUB_TOKEN",
         "valueSource": {"secretKeyRef": {"secret": "hf-token", "version": "latest"}}},
        {"name": "MAX_NUM_BATCHED_TOKENS", "value": "8192"},
        {"name": "MODEL", "value": "google/gemma-3-1b-it"},
    ])
    assert check(g.no_plaintext_tokens, RUN_SERVICE, props) == []


def test_kubernetes_literal_token_fails_and_secret_ref_passes():
    literal = deployment([{"name": "HUGGING_FACE_HUB_TOKEN", "value": "hf_abc"}])
    violations = check(g.no_plaintext_tokens, DEPLOYMENT, literal, name="vllm")
    assert len(violations) == 1
    assert "Deployment 'vllm'" in violations[0] and "secretKeyRef" in violations[0]

    from_config_map = deployment([{"name": "HF_TOKEN", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}])
    assert len(check(g.no_plaintext_tokens, DEPLOYMENT, from_config_map)) == 1

    from_secret = deployment([{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}])
    assert check(g.no_plaintext_tokens, DEPLOYMENT, from_secret) == []


def test_vertex_container_env_with_a_token_fails_whatever_its_source():
    violations = check(g.no_plaintext_tokens, VERTEX, vertex(envs=[{"name": "HF_TOKEN", "value": "hf_abc"}]),
                       name="gemma")
    assert len(violations) == 1
    assert "'gemma'" in violations[0] and "hugging_face_access_token" in violations[0]
    assert check(g.no_plaintext_tokens, VERTEX, vertex(envs=[{"name": "VLLM_LOGGING_LEVEL", "value": "INFO"}])) == []


# --------------------------------------------------------------------------- bucket-uniform-access-and-pap

def test_private_bucket_passes():
    props = {"name": "models", "labels": LABELS, "uniformBucketLevelAccess": True,
             "publicAccessPrevention": "enforced"}
    assert check(g.bucket_access, BUCKET, props) == []


def test_bucket_without_ubla_or_pap_fails_with_both_fixes():
    violations = check(g.bucket_access, BUCKET,
                       {"name": "models", "publicAccessPrevention": "inherited"}, name="models")
    assert len(violations) == 2
    assert all("Bucket 'models'" in v for v in violations)
    assert "uniform_bucket_level_access=True" in violations[0]
    assert 'public_access_prevention="enforced"' in violations[1]


# --------------------------------------------------------------------------- no-authoritative-iam

@pytest.mark.parametrize("resource_type", [
    "gcp:projects/iAMPolicy:IAMPolicy",
    "gcp:projects/iAMBinding:IAMBinding",
    "gcp:storage/bucketIAMBinding:BucketIAMBinding",
    "gcp:secretmanager/secretIamPolicy:SecretIamPolicy",
    "gcp:artifactregistry/repositoryIamBinding:RepositoryIamBinding",
    "gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy",
    "gcp:serviceaccount/iAMBinding:IAMBinding",
])
def test_authoritative_iam_fails_and_points_to_the_member_resource(resource_type):
    violations = check(g.no_authoritative_iam, resource_type, {"role": "roles/viewer"}, name="grant")
    assert len(violations) == 1
    assert "'grant'" in violations[0]
    assert re.sub(r"(Policy|Binding)$", "Member", resource_type) in violations[0]


@pytest.mark.parametrize("resource_type", [
    "gcp:projects/iAMMember:IAMMember",
    "gcp:storage/bucketIAMMember:BucketIAMMember",
    "gcp:secretmanager/secretIamMember:SecretIamMember",
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
])
def test_additive_iam_passes(resource_type):
    assert check(g.no_authoritative_iam, resource_type, {"role": "roles/viewer"}) == []


def test_authoritative_iam_passes_when_exempted():
    assert check(g.no_authoritative_iam, "gcp:projects/iAMPolicy:IAMPolicy", {},
                 config={"allowedTypes": ["gcp:projects/iAMPolicy:IAMPolicy"]}) == []


# --------------------------------------------------------------------------- required-labels

def test_labelled_resources_pass():
    assert check(g.required_labels, BUCKET, {"labels": LABELS}) == []
    assert check(g.required_labels, CLUSTER, {"resourceLabels": LABELS}) == []
    assert check(g.required_labels, NODE_POOL, {"nodeConfig": {"resourceLabels": LABELS}}) == []
    # Types without labels are not checked.
    assert check(g.required_labels, "gcp:serviceaccount/account:Account", {"accountId": "vllm"}) == []
    assert check(g.required_labels, VERTEX, vertex()) == []
    channel = "gcp:monitoring/notificationChannel:NotificationChannel"
    assert check(g.required_labels, channel, {"labels": {"email_address": "oncall@example.com"},
                                              "userLabels": LABELS}) == []
    assert len(check(g.required_labels, channel, {"labels": {"email_address": "oncall@example.com"}})) == 1


def test_missing_labels_fail_with_the_keys_and_the_property():
    violations = check(g.required_labels, "gcp:secretmanager/secret:Secret",
                       {"secretId": "hf-token", "labels": {"app": "llm-serving"}}, name="hf-token")
    assert len(violations) == 1
    assert "Secret 'hf-token'" in violations[0]
    assert "managed-by, environment" in violations[0] and "labels" in violations[0]

    cluster = check(g.required_labels, CLUSTER, {"name": "serving"}, name="serving")
    assert len(cluster) == 1 and "resourceLabels" in cluster[0]


def test_provider_default_labels_count():
    provider = PolicyProviderResource("pulumi:providers:gcp", unknown_checking_proxy(
        {"defaultLabels": json.dumps(LABELS)}), "urn:pulumi:dev::llm-serving::pulumi:providers:gcp::gcp", "gcp")
    assert check(g.required_labels, BUCKET, {"name": "models"}, provider=provider) == []


def test_environment_label_must_match_the_stack():
    violations = check(g.required_labels, BUCKET, {"labels": LABELS}, name="models",
                       config={"environment": "prod"})
    assert len(violations) == 1
    assert "Bucket 'models'" in violations[0] and "'prod'" in violations[0]


# --------------------------------------------------------------------------- accelerator-budget

def _serving_stack() -> list[PolicyResource]:
    return [
        resource(RUN_SERVICE, "chat", cloud_run(gpus=1, max_instances=2)),            # 2 GPUs
        resource(VERTEX, "gemma", vertex(count=1, max_replicas=2)),                   # 2 GPUs
        resource(CLUSTER, "serving", {"name": "serving", "location": "us-central1",
                                      "nodeLocations": ["us-central1-a", "us-central1-b"],
                                      "resourceLabels": LABELS}),
        resource(NODE_POOL, "tpu", {"cluster": "projects/p/locations/us-central1/clusters/serving",
                                    "nodeConfig": {"machineType": "ct6e-standard-8t"},
                                    "autoscaling": {"totalMaxNodeCount": 1}}),        # 8 chips
        resource(BUCKET, "models", {"labels": LABELS}),
    ]


def test_accelerator_use_is_counted_at_max_scale():
    uses = {u.label.split("'")[1]: u for u in g.accelerator_uses(_serving_stack(), lambda *a: None)}
    assert (uses["chat"].gpus, uses["gemma"].gpus, uses["tpu"].tpu_chips) == (2, 2, 8)

    gpu_pool = resource(NODE_POOL, "l4", {"cluster": "serving", "location": "us-central1",
                                          "nodeConfig": {"machineType": "g2-standard-24"},
                                          "autoscaling": {"maxNodeCount": 2}})
    cluster = resource(CLUSTER, "serving", {"name": "serving", "location": "us-central1"})
    (use,) = g.accelerator_uses([cluster, gpu_pool], lambda *a: None)
    assert use.gpus == 2 * 2 * 3, use.formula  # 2 GPUs per node x 2 nodes per zone x 3 zones (regional)


def test_stack_within_budget_passes():
    assert check_stack(g.accelerator_budget, _serving_stack(),
                       config={"acceleratorBudget": {"gpus": 4, "tpuChips": 8}}) == []


def test_stack_over_budget_fails_and_lists_the_contributors():
    violations = check_stack(g.accelerator_budget, _serving_stack(),
                             config={"acceleratorBudget": {"gpus": 3, "tpuChips": 4}})
    messages = [m for m, _ in violations]
    assert len(messages) == 2
    gpus, chips = messages
    assert "4 GPUs" in gpus and "budget of 3" in gpus
    assert "Service 'chat'" in gpus and "AiEndpointWithModelGardenDeployment 'gemma'" in gpus
    assert "acceleratorBudget.gpus" in gpus and "max_replica_count" in gpus
    assert "8 TPU chips" in chips and "NodePool 'tpu'" in chips and "acceleratorBudget.tpuChips" in chips


def test_default_budget_applies_without_config():
    big = [resource(VERTEX, "big", vertex(count=8, machine="a3-highgpu-8g", accel="NVIDIA_H100_80GB",
                                          max_replicas=2))]
    (violation,) = check_stack(g.accelerator_budget, big)
    assert "16 GPUs" in violation[0] and f"budget of {g.DEFAULT_ACCELERATOR_BUDGET['gpus']}" in violation[0]


def test_gpu_service_without_max_instances_fails_on_that_resource():
    stack = [resource(RUN_SERVICE, "chat", cloud_run(gpus=1))]
    (violation,) = check_stack(g.accelerator_budget, stack, config={"acceleratorBudget": {"gpus": 100}})
    message, urn = violation
    assert urn == stack[0].urn
    assert "Service 'chat'" in message and "max_instance_count" in message


# --------------------------------------------------------------------------- prod-cluster-deletion-protection

def test_prod_cluster_without_deletion_protection_fails():
    props = {"name": "serving", "resourceLabels": {**LABELS, "environment": "prod"}, "deletionProtection": False}
    violations = check(g.prod_cluster_deletion_protection, CLUSTER, props, name="serving")
    assert len(violations) == 1
    assert "Cluster 'serving'" in violations[0] and "deletion_protection=True" in violations[0]


def test_prod_config_makes_an_unlabelled_cluster_prod():
    assert len(check(g.prod_cluster_deletion_protection, CLUSTER, {"name": "serving"},
                     config={"environment": "prod"})) == 1


def test_protected_prod_cluster_and_dev_cluster_pass():
    prod = {"resourceLabels": {**LABELS, "environment": "prod"}, "deletionProtection": True}
    assert check(g.prod_cluster_deletion_protection, CLUSTER, prod, config={"environment": "prod"}) == []
    dev = {"resourceLabels": LABELS, "deletionProtection": False}
    assert check(g.prod_cluster_deletion_protection, CLUSTER, dev, config={"environment": "dev"}) == []


# --------------------------------------------------------------------------- preview behaviour

def test_unknown_values_surface_as_the_sdk_error_the_engine_reports_as_advisory():
    with pytest.raises(UnknownValueError):
        check(g.bucket_access, BUCKET, {"uniformBucketLevelAccess": True,
                                        "publicAccessPrevention": UNKNOWN_STRING_VALUE})


# --------------------------------------------------------------------------
# no-unauthenticated-public-endpoints and no-tokens-in-plain-inputs

SERVICE = "kubernetes:core/v1:Service"
POD_LABELS = {"app": "vllm"}


def _k8s_deployment(env: list) -> PolicyResource:
    props = {"metadata": {"name": "vllm", "namespace": "ml"},
             "spec": {"selector": {"matchLabels": POD_LABELS}, "template": {"metadata": {"labels": POD_LABELS},
                      "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.32.0", "env": env}]}}}}
    return PolicyResource(DEPLOYMENT, unknown_checking_proxy(props), _urn(DEPLOYMENT, "vllm"), "vllm", _opts(),
                          None, None, [], {})


def _k8s_service(annotations: dict) -> PolicyResource:
    props = {"metadata": {"name": "vllm", "namespace": "ml", "annotations": annotations},
             "spec": {"type": "LoadBalancer", "selector": POD_LABELS, "ports": [{"port": 8000}]}}
    return PolicyResource(SERVICE, unknown_checking_proxy(props), _urn(SERVICE, "vllm"), "vllm", _opts(),
                          None, None, [], {})


KEYED = [{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "api_key"}}}]


def _public_endpoint_violations(env: list, annotations: dict, environment: str = "staging") -> list[str]:
    violations: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        violations.append(message)

    args = StackValidationArgs([_k8s_deployment(env), _k8s_service(annotations)], {"environment": environment})
    g.no_unauthenticated_public_endpoints.validate(args, report)
    return violations


def test_public_service_with_key_and_acknowledgement_passes():
    assert _public_endpoint_violations(KEYED, {"llm-serving/public-endpoint": "acknowledged"}) == []
    assert _public_endpoint_violations(KEYED, {"llm-serving/public-endpoint": "acknowledged,prod-acknowledged"},
                                       environment="prod") == []


def test_internal_service_needs_nothing():
    assert _public_endpoint_violations([], {"networking.gke.io/load-balancer-type": "Internal"}) == []


def test_public_service_without_key_or_acknowledgement_fails():
    (no_key,) = _public_endpoint_violations([], {"llm-serving/public-endpoint": "acknowledged"})
    assert "require no API key" in no_key
    literal = [{"name": "VLLM_API_KEY", "value": "plain"}]
    assert any("require no API key" in v for v in _public_endpoint_violations(literal, {"llm-serving/public-endpoint": "acknowledged"}))
    (unacknowledged,) = _public_endpoint_violations(KEYED, {})
    assert "nobody acknowledged" in unacknowledged
    (prod,) = _public_endpoint_violations(KEYED, {"llm-serving/public-endpoint": "acknowledged"}, environment="prod")
    assert "prod-only acknowledgement" in prod


HF_TOKEN_SHAPE = "hf_" + "Ab1" * 12


def test_token_shapes_and_flags_in_plain_inputs_fail():
    found = check(g.no_tokens_in_plain_inputs, RUN_SERVICE, {"template": {"containers": [
        {"args": ["--model=x", "--api-key=abc"], "envs": [{"name": "NOTE", "value": f"token {HF_TOKEN_SHAPE}"}]}]}})
    assert any("template.containers[0].envs[0].value holds a credential-shaped value" in v for v in found), found
    assert any("passes --api-key on the command line" in v for v in found), found
    assert check(g.no_tokens_in_plain_inputs, BUCKET, {"labels": {"note": HF_TOKEN_SHAPE}})


def test_secret_fields_may_hold_tokens():
    assert check(g.no_tokens_in_plain_inputs, "kubernetes:core/v1:Secret", {"stringData": {"hf_api_token": HF_TOKEN_SHAPE}}) == []
    assert check(g.no_tokens_in_plain_inputs, "gcp:secretmanager/secretVersion:SecretVersion", {"secretData": HF_TOKEN_SHAPE}) == []
    assert check(g.no_tokens_in_plain_inputs, RUN_SERVICE, {"template": {"containers": [{"args": ["--max-num-batched-tokens=8192"]}]}}) == []
