"""The policy pack over the program's real registrations (offline.policies): the committed stacks
pass every policy, and each policy catches a stack that violates it. Violations come from the
program (a stack file variant planned end to end) where the config can express the mistake, and
from a small program registering the resources otherwise (the config refuses those mistakes
before anything is registered, so only hand-written code could make them)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
import pytest

from components.container import ServingContainer
from components.gke_cluster import GkeCluster, GkeClusterArgs, NodePoolSpec
from components.gke_workload import VllmGkeWorkload, VllmGkeWorkloadArgs
from offline.mocks import MOCK_PROJECT_NUMBER
from offline.plan import ROOT, plan, read_stack_file
from offline.policies import pack_config, run_policies
from offline.runner import run_under_mocks
from policies.guardrails import POLICIES
from stacks.catalog.gke import gke_hardware

NS = "llm-serving:"


def _container(**env: str) -> ServingContainer:
    return ServingContainer(image="vllm/vllm-tpu:v0.32.0", command=("python3", "-m", "vllm.entrypoints.openai.api_server"),
                            args=("--port=8000",), port=8000, health_path="/health", served_model_name="m", env=env)


# Arguments every workload in these programs shares.
WORKLOAD: dict[str, Any] = dict(project="mock-project", project_number=MOCK_PROJECT_NUMBER, model_bucket="mock-bucket",
                namespace="llm-serving", mount_path="/data", startup_timeout_seconds=600, min_replicas=1,
                max_replicas=1, autoscaling_metric="vllm:num_requests_waiting", autoscaling_target=10.0,
                cpu_request="1", memory_request="1Gi", bucket_prefixes=("models--x/",))
LABELS = {"managed-by": "pulumi", "app": "llm-serving", "environment": "prod"}


@pytest.mark.parametrize("stack", ("dev", "staging", "prod"))
def test_committed_stacks_pass_the_pack_in_the_plan(stack: str):
    values, secret_keys = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    result = plan(values, secret_keys, stack=stack, source=f"Pulumi.{stack}.yaml")
    assert result.run is not None and not result.failed, [v.render() for v in result.violations]
    assert result.violations == []


def _stack_variant(stack: str, change: Callable[[dict], None]) -> list:
    values, secret_keys = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    values = copy.deepcopy(values)
    change(values)
    result = plan(values, secret_keys, stack=stack, source=f"Pulumi.{stack}.yaml")
    assert result.run is not None, "the variant was refused before the pack could run"
    assert result.failed, "a stack with policy violations must fail the plan"
    return result.violations


def _program(body: Callable[[], Any], stack: str = "prod") -> list:
    return run_policies(run_under_mocks(body).registrations, pack_config(stack))


def _public_invoker(values: dict) -> None:
    values[f"{NS}access"] = {"allowPublicInvokers": True}
    values[f"{NS}deployments"]["gemma-1b"]["cloudrun"]["invokers"] = ["allUsers"]


def _api_key_flag(values: dict) -> None:
    values[f"{NS}deployments"]["gemma-1b"]["vllm"]["extraArgs"] = ["--api-key=abc123"]


def _budget(values: dict) -> None:
    values[f"{NS}gke"]["nodePools"]["tpu-v6e"]["maxNodes"] = 10


def _plain_token_env() -> None:
    cluster = GkeCluster("gke", GkeClusterArgs(project="mock-project", location="us-east5-b", cluster_name="c", hardware=gke_hardware(),
                                               deletion_protection=True, labels=LABELS,
                                               node_pools={"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4")}))
    VllmGkeWorkload("w", VllmGkeWorkloadArgs(
        provider=cluster.provider, accelerator=cluster.placement("tpu"), container=_container(WANDB_TOKEN="plain"),
        **WORKLOAD))


def _open_bucket() -> None:
    gcp.storage.Bucket("open", location="EU", labels=LABELS, uniform_bucket_level_access=False)


def _authoritative_binding() -> None:
    gcp.storage.BucketIAMBinding("binding", bucket="b", role="roles/storage.objectViewer", members=["user:a@example.com"])


def _unlabelled_secret() -> None:
    gcp.secretmanager.Secret("unlabelled", secret_id="s", replication={"auto": {}})


def _unprotected_prod_cluster() -> None:
    GkeCluster("gke", GkeClusterArgs(project="mock-project", location="us-east5-b", cluster_name="c", hardware=gke_hardware(),
                                     deletion_protection=False, labels=LABELS))


def _public_endpoint_without_prod_acknowledgement() -> None:
    cluster = GkeCluster("gke", GkeClusterArgs(project="mock-project", location="us-east5-b", cluster_name="c", hardware=gke_hardware(),
                                               deletion_protection=True, labels=LABELS,
                                               node_pools={"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4")}))
    VllmGkeWorkload("w", VllmGkeWorkloadArgs(
        provider=cluster.provider, accelerator=cluster.placement("tpu"), container=_container(),
        public_load_balancer=True, api_key=pulumi.Output.secret("k" * 40),
        public_endpoint_acknowledgements=("acknowledged",), allowed_cidrs=("0.0.0.0/0",), **WORKLOAD))


def _public_service_without_key() -> None:
    labels = {"app": "open"}
    spec: Any = {"selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.32.0"}]}}}
    k8s.apps.v1.Deployment("open", metadata={"name": "open", "namespace": "default"}, spec=spec)
    k8s.core.v1.Service("open", metadata={"name": "open", "namespace": "default",
                                          "annotations": {"llm-serving/public-endpoint": "acknowledged,prod-acknowledged"}},
                        spec={"type": "LoadBalancer", "selector": labels, "ports": [{"port": 80}]})


VIOLATIONS = {
    "no-public-invokers": (lambda: _stack_variant("staging", _public_invoker), "allUsers"),
    "no-plaintext-tokens": (lambda: _program(_plain_token_env), "WANDB_TOKEN"),
    "bucket-uniform-access-and-pap": (lambda: _program(_open_bucket), "uniform bucket-level access"),
    "no-authoritative-iam": (lambda: _program(_authoritative_binding), "is authoritative"),
    "required-labels": (lambda: _program(_unlabelled_secret), "missing the label(s) managed-by, app, environment"),
    "accelerator-budget": (lambda: _stack_variant("prod", _budget), "80 TPU chips"),
    "prod-cluster-deletion-protection": (lambda: _program(_unprotected_prod_cluster), "deletion"),
    "no-unauthenticated-public-endpoints": (lambda: _program(_public_endpoint_without_prod_acknowledgement),
                                            "without the prod-only acknowledgement"),
    "no-tokens-in-plain-inputs": (lambda: _stack_variant("dev", _api_key_flag), "passes --api-key on the command line"),
}


def test_every_policy_has_a_violating_stack():
    assert set(VIOLATIONS) == {p.name for p in POLICIES}


@pytest.mark.parametrize("policy", sorted(VIOLATIONS))
def test_policy_catches_its_violating_stack(policy: str):
    make, fragment = VIOLATIONS[policy]
    violations = make()
    mine = [v for v in violations if v.policy == policy]
    assert mine, f"{policy} reported nothing; all violations: {[v.render() for v in violations]}"
    assert any(fragment in v.message for v in mine), [v.render() for v in mine]


def test_public_service_in_front_of_pods_without_a_key_is_caught():
    violations = [v for v in _program(_public_service_without_key) if v.policy == "no-unauthenticated-public-endpoints"]
    assert any("which require no API key" in v.message and v.resource == "open" for v in violations), violations
