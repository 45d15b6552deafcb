"""The GKE deployment on both cluster modes, through the whole program under the mock engine:
Standard (the committed prod stack: a TPU v6e 2x4 node pool) and Autopilot as the README
documents it (no node pools; the deployment names the machine, Autopilot provisions it)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from offline.plan import plan, read_stack_file

ROOT = Path(__file__).resolve().parents[2]
NS = "llm-serving:"


def prod_values() -> tuple[dict, set[str]]:
    return read_stack_file(ROOT / "Pulumi.prod.yaml")


def autopilot_values() -> tuple[dict, set[str]]:
    values, secrets = prod_values()
    values = copy.deepcopy(values)
    gke = values[f"{NS}gke"]
    gke["autopilot"] = True
    del gke["nodePools"]
    values[f"{NS}deployments"]["llama-70b"]["hardware"] = {"machineType": "ct6e-standard-8t"}
    return values, secrets


def planned(values_and_secrets, tmp_path):
    values, secrets = values_and_secrets
    result = plan(values, secrets, stack="prod", source="Pulumi.prod.yaml", out_dir=tmp_path)
    assert not result.failed, [c.render() for c in result.checks if c.level == "error"]
    return result


def workload_pod_spec(result) -> dict:
    deployment = result.run.named("llm-prod-llama-70b-deployment").inputs
    return deployment["spec"]["template"]["spec"]


@pytest.mark.parametrize("mode", ["standard", "autopilot"])
def test_the_tpu_workload_is_planned_on_both_cluster_modes(mode, tmp_path):
    result = planned(prod_values() if mode == "standard" else autopilot_values(), tmp_path)
    assert "llama-70b" in result.resolved.deployments, f"{mode}: llama-70b vanished from the plan"
    cluster = result.run.named("llm-prod-gke-cluster").inputs
    pools = [r.name for r in result.run.of_type("gcp:container/nodePool:NodePool")]
    if mode == "autopilot":
        assert cluster.get("enableAutopilot") is True, f"llm-prod-gke-cluster: enableAutopilot {cluster.get('enableAutopilot')!r}"
        assert not pools, f"{mode}: Autopilot creates no node pools, got {pools}"
    else:
        assert not cluster.get("enableAutopilot"), "llm-prod-gke-cluster: Standard cluster created as Autopilot"
        assert "llm-prod-gke-tpu-v6e" in pools, f"{mode}: TPU node pool missing: {pools}"
    # Release channel default, no exact patch that GKE may no longer offer.
    assert cluster.get("minMasterVersion") is None, f"llm-prod-gke-cluster: minMasterVersion {cluster.get('minMasterVersion')!r}"
    spec = workload_pod_spec(result)
    selectors = spec["nodeSelector"]
    if mode == "standard":
        # prod's pool has fallbacks: the pod selects the pool's ComputeClass, which carries the slice shape.
        assert selectors == {"cloud.google.com/compute-class": "tpu-v6e"}, f"{mode}: {selectors}"
        cc = result.run.named("llm-prod-tpu-v6e-class-computeclass").inputs["spec"]
        shapes = [p["tpu"] for p in cc["priorities"] if "tpu" in p]
        assert shapes and all(t == {"type": "tpu-v6e-slice", "count": 8, "topology": "2x4"} for t in shapes), \
            f"llm-prod-tpu-v6e-class-computeclass: priorities {cc['priorities']}"
    else:
        assert selectors.get("cloud.google.com/gke-tpu-accelerator") == "tpu-v6e-slice", f"{mode}: {selectors}"
        assert selectors.get("cloud.google.com/gke-tpu-topology") == "2x4", f"{mode}: {selectors}"
    limits = spec["containers"][0]["resources"]["limits"]
    assert str(limits.get("google.com/tpu")) == "8", f"{mode}: llm-prod-llama-70b-deployment limits {limits}"


def test_a_gke_version_floor_is_sent_as_given(tmp_path):
    values, secrets = prod_values()
    values = copy.deepcopy(values)
    values[f"{NS}gke"]["minMasterVersion"] = "1.33"
    result = planned((values, secrets), tmp_path)
    cluster = result.run.named("llm-prod-gke-cluster").inputs
    assert cluster.get("minMasterVersion") == "1.33", f"llm-prod-gke-cluster: minMasterVersion {cluster.get('minMasterVersion')!r}"


def test_autopilot_needs_the_machine_on_the_deployment(tmp_path):
    from stacks.schema import ConfigError

    values, secrets = autopilot_values()
    del values[f"{NS}deployments"]["llama-70b"]["hardware"]
    with pytest.raises(ConfigError) as error:
        plan(values, secrets, stack="prod", source="Pulumi.prod.yaml", out_dir=tmp_path)
    assert f"{NS}deployments.llama-70b.hardware.machineType: is required on an Autopilot cluster" in str(error.value)
