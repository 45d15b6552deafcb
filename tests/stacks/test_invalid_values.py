"""Values the components or Google Cloud would reject, each refused by the offline plan's command
line with exit 2 and one message naming the stack file, the key path, the bad value and the fix;
values that are in fact valid plan. Every case starts from a committed stack file and changes
one thing, so a failure points at that one thing."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline.plan import main as plan_main

ROOT = Path(__file__).resolve().parents[2]
NS = "llm-serving:"
TOKEN = "hf_" + "Zq7" * 12  # shaped like a Hugging Face token, never a real one


def committed(stack: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))["config"]


def set_path(config: dict[str, Any], key: str, value: Any) -> None:
    """`llm-serving:deployments.llama-8b.scaling.target` -> config[...]['llama-8b']['scaling']['target']."""
    top, _, rest = key.partition(".") if not key.startswith("gcp:") else (key, "", "")
    if not rest:
        config[top] = value
        return
    node = config.setdefault(top, {})
    parts = rest.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def run_plan(tmp_path: Path, config: dict[str, Any], capsys, *extra: str) -> tuple[int, str, str]:
    path = tmp_path / "Pulumi.mutated.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False), encoding="utf-8")
    code = plan_main(["--file", str(path), "--out", str(tmp_path / "build"), *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def mutated(stack: str, *changes: tuple[str, Any], edit: Callable[[dict], None] | None = None) -> dict[str, Any]:
    config = copy.deepcopy(committed(stack))
    for key, value in changes:
        set_path(config, key, value)
    if edit is not None:
        edit(config)
    return config


def refused(tmp_path, capsys, config: dict[str, Any], key_path: str, *fragments: str) -> str:
    code, out, err = run_plan(tmp_path, config, capsys)
    assert code == 2, f"{key_path}: expected exit 2 (invalid config), got {code}\nstdout: {out[-800:]}\nstderr: {err}"
    assert "Traceback" not in err + out, f"{key_path}: a traceback reached the user:\n{err}"
    assert "Pulumi.mutated.yaml" in err, f"{key_path}: the message does not name the file:\n{err}"
    lines = [line for line in err.splitlines() if line.strip().startswith(f"- {key_path}:")]
    assert lines, f"no problem at {key_path!r}; got:\n{err}"
    for fragment in fragments:
        assert any(fragment in line for line in lines), f"{key_path}: expected {fragment!r} in:\n{err}"
    return err


GKE_DEPLOYMENT = f"{NS}deployments.llama-70b"
VERTEX_DEPLOYMENT = f"{NS}deployments.llama-8b"
CLOUDRUN_DEPLOYMENT = f"{NS}deployments.gemma-1b"

# (stack, changes, key path, fragments of the message: the value and the fix)
CASES = {
    "soft delete days 1-6": ("dev", [(f"{NS}bucket.softDeleteDays", 3)], f"{NS}bucket.softDeleteDays",
                             ["got 3", "7-90", "set 0 to turn soft delete off"]),
    "region set to a zone": ("dev", [("gcp:region", "us-central1-a")], "gcp:region",
                             ["'us-central1-a', which is a zone", "set it to 'us-central1'"]),
    "misspelt region": ("dev", [("gcp:region", "us-centrl1")], "gcp:region",
                        ["'us-centrl1'", "did you mean 'us-central1'"]),
    "label not a GCP label": ("dev", [(f"{NS}labels", {"Team": "ML Platform"})], f"{NS}labels.Team",
                              ["label key 'Team'", "lowercase"]),
    "label value with spaces": ("dev", [(f"{NS}labels", {"team": "ML Platform"})], f"{NS}labels.team",
                                ["'ML Platform'", "ml-platform"]),
    "vertex duty cycle as a fraction": ("dev", [(f"{VERTEX_DEPLOYMENT}.scaling.target", 0.9)],
                                        f"{VERTEX_DEPLOYMENT}.scaling.target",
                                        ["got 0.9", "whole percent from 1 to 100", "did you mean 90"]),
    "NaN target": ("dev", [(f"{VERTEX_DEPLOYMENT}.scaling.target", float("nan"))],
                   f"{VERTEX_DEPLOYMENT}.scaling.target", ["nan", "finite"]),
    "infinite gpuMemoryUtilization": ("dev", [(f"{VERTEX_DEPLOYMENT}.vllm.gpuMemoryUtilization", float("inf"))],
                                      f"{VERTEX_DEPLOYMENT}.vllm.gpuMemoryUtilization", ["inf", "finite"]),
    "NaN as text": ("dev", [(f"{VERTEX_DEPLOYMENT}.vllm.gpuMemoryUtilization", "NaN")],
                    f"{VERTEX_DEPLOYMENT}.vllm.gpuMemoryUtilization", ["'NaN'", "finite"]),
    "vertex min replicas 0": ("dev", [(f"{VERTEX_DEPLOYMENT}.scaling.minReplicas", 0)],
                              f"{VERTEX_DEPLOYMENT}.scaling.minReplicas", ["got 0", "at least 1 replica"]),
    "gke min replicas 0": ("prod", [(f"{GKE_DEPLOYMENT}.scaling.minReplicas", 0)],
                           f"{GKE_DEPLOYMENT}.scaling.minReplicas", ["got 0", "Set 1 or more"]),
    "gke target 0": ("prod", [(f"{GKE_DEPLOYMENT}.scaling.target", 0)], f"{GKE_DEPLOYMENT}.scaling.target",
                     ["got 0", "above 0"]),
    "gke kv usage above 1": ("prod", [(f"{GKE_DEPLOYMENT}.scaling.metric", "kv_cache_usage"),
                                      (f"{GKE_DEPLOYMENT}.scaling.target", 1.5)],
                             f"{GKE_DEPLOYMENT}.scaling.target", ["got 1.5", "at most 1"]),
    "cloud run target": ("dev", [(f"{CLOUDRUN_DEPLOYMENT}.scaling.target", 5)], f"{CLOUDRUN_DEPLOYMENT}.scaling.target",
                         ["got 5", "cloudrun.maxConcurrency"]),
    "cloud run cpu with hundreds of digits": ("dev", [(f"{CLOUDRUN_DEPLOYMENT}.hardware.cpu", "9" * 300)],
                                              f"{CLOUDRUN_DEPLOYMENT}.hardware.cpu",
                                              ["300 characters", "whole number of vCPUs"]),
    "cloud run cpu 100": ("dev", [(f"{CLOUDRUN_DEPLOYMENT}.hardware.cpu", 100)], f"{CLOUDRUN_DEPLOYMENT}.hardware.cpu",
                          ["got '100'", "4 to 8"]),
    "cloud run memory 512Gi": ("dev", [(f"{CLOUDRUN_DEPLOYMENT}.hardware.memory", "512Gi")],
                               f"{CLOUDRUN_DEPLOYMENT}.hardware.memory", ["got '512Gi'", "16Gi to 32Gi"]),
    "cloud run GPU not in the region": ("dev", [("gcp:region", "us-west1")], "gcp:region",
                                        ["no nvidia-l4 GPU in us-west1", "us-central1"]),
    "bucket name with goog prefix": ("dev", [(f"{NS}bucket.name", "goog-models")], f"{NS}bucket.name",
                                     ["'goog-models'", "goog"]),
    "bucket name with two dots": ("dev", [(f"{NS}bucket.name", "a..b")], f"{NS}bucket.name", ["'a..b'", ".."]),
    "bucket name google-like": ("dev", [(f"{NS}bucket.name", "acme-g00gle-models")], f"{NS}bucket.name",
                                ["google"]),
    "gke namespace too long": ("prod", [(f"{GKE_DEPLOYMENT}.gke.namespace", "n" * 64)],
                               f"{GKE_DEPLOYMENT}.gke.namespace", ["64 characters", "at most 63"]),
    "gke namespace of the metrics adapter": ("prod", [(f"{GKE_DEPLOYMENT}.gke.namespace", "custom-metrics")],
                                             f"{GKE_DEPLOYMENT}.gke.namespace",
                                             ["'custom-metrics'", "custom-metrics adapter", "choose your own"]),
    "gke namespace kube-system": ("prod", [(f"{GKE_DEPLOYMENT}.gke.namespace", "kube-system")],
                                  f"{GKE_DEPLOYMENT}.gke.namespace", ["'kube-system'", "Kubernetes itself"]),
    "extraArgs --port": ("prod", [(f"{GKE_DEPLOYMENT}.vllm.extraArgs", ["--port=9000"])],
                         f"{GKE_DEPLOYMENT}.vllm.extraArgs[0]", ["'--port=9000'", "container port"]),
    "extraArgs --host": ("prod", [(f"{GKE_DEPLOYMENT}.vllm.extraArgs", ["--host=127.0.0.1"])],
                         f"{GKE_DEPLOYMENT}.vllm.extraArgs[0]", ["'--host=127.0.0.1'", "0.0.0.0"]),
    "extraArgs --tensor-parallel-size": ("prod", [(f"{GKE_DEPLOYMENT}.vllm.extraArgs", ["--tensor-parallel-size=4"])],
                                         f"{GKE_DEPLOYMENT}.vllm.extraArgs[0]", ["`vllm.tensorParallelSize`"]),
    "extraArgs --disable-log-stats": ("prod", [(f"{GKE_DEPLOYMENT}.vllm.extraArgs", ["--disable-log-stats"])],
                                      f"{GKE_DEPLOYMENT}.vllm.extraArgs[0]", ["`vllm.disableLogStats`"]),
    "extraArgs underscore spelling": ("dev", [(f"{VERTEX_DEPLOYMENT}.vllm.extraArgs", ["--max_model_len=2048"])],
                                      f"{VERTEX_DEPLOYMENT}.vllm.extraArgs[0]", ["`vllm.maxModelLen`"]),
    "label the stack sets itself": ("dev", [(f"{NS}labels", {"environment": "prod"})], f"{NS}labels.environment",
                                    ["the stack sets itself", "choose another key"]),
    "deployment label named deployment": ("dev", [(f"{CLOUDRUN_DEPLOYMENT}.labels", {"deployment": "x"})],
                                          f"{CLOUDRUN_DEPLOYMENT}.labels.deployment", ["the stack sets itself"]),
    "vertex deployment labels": ("dev", [(f"{VERTEX_DEPLOYMENT}.labels", {"team": "ml"})], f"{VERTEX_DEPLOYMENT}.labels",
                                 ["take no user labels", "remove them"]),
    "gke label key invalid": ("prod", [(f"{GKE_DEPLOYMENT}.labels", {"Owner Team": "ml"})],
                              f"{GKE_DEPLOYMENT}.labels.Owner Team", ["label key 'Owner Team'"]),
    "gke zone without TPU v6e": ("prod", [(f"{NS}gke.location", "europe-west4-b")], f"{NS}gke.location",
                                 ["'europe-west4-b', a zone without tpu-v6e", "europe-west4-a", "us-east5-b"]),
    "misspelt gke zone": ("prod", [(f"{NS}gke.location", "europe-west4-aa")], f"{NS}gke.location",
                          ["'europe-west4-aa'", "did you mean 'europe-west4-a'"]),
    "gke version floor below TPU v6e": ("prod", [(f"{NS}gke.minMasterVersion", "1.30")], f"{NS}gke.minMasterVersion",
                                        ["'1.30'", "1.31.2-gke.1115000"]),
    "autopilot without a machine type": ("prod", [(f"{NS}gke.autopilot", True)],
                                         f"{NS}gke.nodePools", ["Autopilot clusters have no node pools"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_value_exits_2_naming_file_key_value_and_fix(case, tmp_path, capsys):
    stack, changes, key_path, fragments = CASES[case]
    refused(tmp_path, capsys, mutated(stack, *changes), key_path, *fragments)


def test_service_account_id_too_short_after_the_prefix(tmp_path, capsys):
    def rename(config):
        deployments = config[f"{NS}deployments"]
        deployments["g"] = deployments.pop("gemma-1b")
        config[f"{NS}namePrefix"] = "abc"
    refused(tmp_path, capsys, mutated("dev", edit=rename), f"{NS}deployments.g",
            "'abc-g' (5 characters)", "6-30 characters", "Change the deployment name")


@pytest.mark.parametrize("key, value", [
    (f"{NS}hfTokenSecret", TOKEN),
    (f"{VERTEX_DEPLOYMENT}.vllm.extraArgs", [f"--hf-token={TOKEN}"]),
    (f"{NS}labels", {"owner": TOKEN.lower()}),
    (f"{CLOUDRUN_DEPLOYMENT}.vllm.chatTemplate", TOKEN),
])
def test_a_token_in_a_plain_key_is_refused_without_echoing_it(key, value, tmp_path, capsys):
    config = mutated("dev", (key, value))
    code, out, err = run_plan(tmp_path, config, capsys)
    assert code == 2, f"{key}: a token in plain config planned (exit {code})"
    assert TOKEN not in out + err and TOKEN.lower() not in out + err, f"{key}: the token was echoed:\n{err}"
    assert "looks like a token (not shown)" in err and "pulumi config set --secret" in err, err


def test_a_public_model_with_weights_in_the_image_plans(tmp_path, capsys):
    """Not gated: the image builds without the token (cloudbuild-public.yaml)."""
    public = {"architecture": "LlamaForCausalLM", "paramsBillion": 1.1, "numLayers": 22, "hiddenSize": 2048,
              "numAttentionHeads": 32, "numKvHeads": 4, "headDim": 64, "vocabSize": 32000, "maxContext": 2048,
              "chatTemplate": True, "gated": False}
    config = mutated("dev", (f"{CLOUDRUN_DEPLOYMENT}.model", "acme/tiny-chat"),
                     (f"{CLOUDRUN_DEPLOYMENT}.customModel", public),
                     (f"{CLOUDRUN_DEPLOYMENT}.vllm.maxModelLen", 2048),
                     (f"{CLOUDRUN_DEPLOYMENT}.cloudrun.weights", "image"))
    code, out, err = run_plan(tmp_path, config, capsys, "--json")
    assert code == 0, f"gemma-1b with a public model: exit {code}\n{err}\n{out[-1500:]}"
    resources = json.loads(out)["resources"]
    cloud_run = next(r for r in resources if r["name"] == "llm-dev-gemma-1b-service")
    assert any(path.startswith("template.containers[0].image") for path in cloud_run["invented"]), \
        f"llm-dev-gemma-1b-service: the built image digest is not marked invented: {cloud_run['invented']}"
    build = next(r for r in resources if r["name"] == "llm-dev-gemma-1b-image-build")
    script = str(build["inputs"].get("create", ""))
    assert "--config=cloudbuild-public.yaml" in script and "_HF_SECRET" not in script, \
        f"llm-dev-gemma-1b-image-build: expected a build without the token secret, got {script[:400]}"


def test_the_vertex_tutorials_enable_lora_warns_and_plans(tmp_path, capsys):
    config = mutated("dev", (f"{VERTEX_DEPLOYMENT}.vllm.extraArgs", ["--enable-lora"]))
    code, out, err = run_plan(tmp_path, config, capsys)
    assert code == 0, f"llama-8b with --enable-lora: exit {code}\n{err}\n{out[-1500:]}"
    assert "--enable-lora without adapters costs about 30%" in out, out[-2000:]
