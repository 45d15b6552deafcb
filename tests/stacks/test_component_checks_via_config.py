"""Components keep their own argument checks (they are reusable), but no config value may reach
them in a state they reject: each component check below is driven through the stack config and
must end as a config error (ConfigError, exit 2, naming the key) before any component is built,
never as the component's ValueError."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from offline.plan import plan, read_stack_file
from stacks.schema import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NS = "llm-serving:"
CR, VX, GK = f"{NS}deployments.gemma-1b", f"{NS}deployments.llama-8b", f"{NS}deployments.llama-70b"


def _set(values: dict[str, Any], key: str, value: Any) -> None:
    if key.startswith("gcp:") or "." not in key:
        values[key] = value
        return
    top, _, rest = key.partition(".")
    node = values.setdefault(top, {})
    *parents, last = rest.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


# component check -> (stack, config key, bad value, key path the config error must name)
CHECKS = {
    "ModelBucket.bucket_name": ("dev", f"{NS}bucket.name", "goog-weights", f"{NS}bucket.name"),
    "ModelBucket.soft_delete_days": ("dev", f"{NS}bucket.softDeleteDays", 5, f"{NS}bucket.softDeleteDays"),
    "ModelBucket.labels": ("dev", f"{NS}labels", {"Cost Center": "x"}, f"{NS}labels.Cost Center"),
    "HuggingFaceToken.existing_secret": ("dev", f"{NS}hfTokenSecret", "projects/acme/secrets/a b", f"{NS}hfTokenSecret"),
    "ModelImageBuild.hf_token_secret": ("dev", f"{NS}hfTokenSecret", "hf token", f"{NS}hfTokenSecret"),
    "ModelImageBuild.model_id": ("dev", f"{CR}.model", "google/gemma--3", f"{CR}.model"),
    "WorkloadServiceAccount.account_id": ("dev", f"{NS}namePrefix", "abcdefghijkl",
                                          None),  # filled below: a long prefix and name
    "CloudRunVllmService.cpu": ("dev", f"{CR}.hardware.cpu", "2", f"{CR}.hardware.cpu"),
    "CloudRunVllmService.memory_gib": ("dev", f"{CR}.hardware.memory", "8Gi", f"{CR}.hardware.memory"),
    "CloudRunVllmService.invokers public": ("dev", f"{CR}.cloudrun.invokers", ["allUsers"], f"{CR}.cloudrun.invokers"),
    "CloudRunVllmService.invokers member": ("dev", f"{CR}.cloudrun.invokers", ["ml@example.com"], f"{CR}.cloudrun.invokers"),
    "CloudRunVllmService.labels": ("dev", f"{CR}.labels", {"team": "ML"}, f"{CR}.labels.team"),
    "CloudRunVllmService.args --port": ("dev", f"{CR}.vllm.extraArgs", ["--port=9000"], f"{CR}.vllm.extraArgs[0]"),
    "CloudRunVllmService.served_model_name": ("dev", f"{CR}.vllm.extraArgs", ["--served-model-name=x"],
                                              f"{CR}.vllm.extraArgs[0]"),
    "VertexVllmEndpoint.min_replica_count": ("dev", f"{VX}.scaling.minReplicas", 0, f"{VX}.scaling.minReplicas"),
    "VertexVllmEndpoint.duty_cycle_target": ("dev", f"{VX}.scaling.target", 0.5, f"{VX}.scaling.target"),
    "VertexVllmEndpoint.duty_cycle_target above 100": ("dev", f"{VX}.scaling.target", 150, f"{VX}.scaling.target"),
    "VertexVllmEndpoint.args --host": ("dev", f"{VX}.vllm.extraArgs", ["--host=127.0.0.1"], f"{VX}.vllm.extraArgs[0]"),
    "VertexVllmEndpoint.args --tensor-parallel-size": ("dev", f"{VX}.vllm.extraArgs", ["-tp=8"], f"{VX}.vllm.extraArgs[0]"),
    "GkeCluster.min_master_version": ("prod", f"{NS}gke.minMasterVersion", "1.31.1", f"{NS}gke.minMasterVersion"),
    "GkeCluster.location": ("prod", f"{NS}gke.location", "europe-west4-q", f"{NS}gke.location"),
    "GkeCluster.node_pools zones": ("prod", f"{NS}gke.location", "europe-west4",  # a region: v6e in one zone only
                                    f"{NS}gke.nodePools.tpu-v6e.nodeLocations"),
    "GkeCluster.node_service_account_id": ("prod", f"{NS}gke.name", "a" * 30, f"{NS}gke.name"),
    "GkeCluster.node_pools autopilot": ("prod", f"{NS}gke.autopilot", True, f"{NS}gke.nodePools"),
    "VllmGkeWorkload.namespace": ("prod", f"{GK}.gke.namespace", "Serving", f"{GK}.gke.namespace"),
    "VllmGkeWorkload.min_replicas": ("prod", f"{GK}.scaling.minReplicas", 0, f"{GK}.scaling.minReplicas"),
    "VllmGkeWorkload.autoscaling_target": ("prod", f"{GK}.scaling.target", -1, f"{GK}.scaling.target"),
    "VllmGkeWorkload.args --disable-log-stats": ("prod", f"{GK}.vllm.extraArgs", ["--disable-log-stats"],
                                                 f"{GK}.vllm.extraArgs[0]"),
    "VllmGkeWorkload.labels": ("prod", f"{GK}.labels", {"team": "-x"}, f"{GK}.labels.team"),
    "VllmGkeWorkload.env token": ("prod", f"{GK}.vllm.chatTemplate", "hf_" + "x1" * 15, f"{GK}.vllm.chatTemplate"),
}


@pytest.mark.parametrize("check", list(CHECKS))
def test_component_check_is_a_config_error_first(check, tmp_path):
    stack, key, value, key_path = CHECKS[check]
    values, secrets = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    values = copy.deepcopy(values)
    if check == "WorkloadServiceAccount.account_id":
        deployments = values[f"{NS}deployments"]
        deployments["gemma-1b-instruct-v2"] = deployments.pop("gemma-1b")
        key_path = f"{NS}deployments.gemma-1b-instruct-v2"
    _set(values, key, value)
    try:
        plan(values, secrets, stack=stack, source=f"Pulumi.{stack}.yaml", out_dir=tmp_path)
    except ConfigError as error:
        assert any(p.path == key_path for p in error.problems), \
            f"{check}: config error without {key_path!r}: {[p.render() for p in error.problems]}"
    except ValueError as error:  # the component's own check: the config let the value through
        pytest.fail(f"{check}: reached the component ({error})")
    else:
        pytest.fail(f"{check}: {key}={value!r} planned; the component or the cloud would reject it")
