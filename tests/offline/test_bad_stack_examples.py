"""Realistic mistakes in a stack file, each kept as a regression test: the plan's command line ends
with exit 0 (the value is in fact valid), 1 (a check refused it) or 2 (a config error), each
with a message and never a traceback or an internal error (exit 3). Where the exact message is
settled, the test asserts it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline import plan as plan_module
from offline.stackfile import read_stack_text

ROOT = Path(__file__).resolve().parents[2]
NS = "llm-serving:"
Mutation = Callable[[dict], None]


def committed(stack: str) -> dict[str, Any]:
    return read_stack_text(ROOT / f"Pulumi.{stack}.yaml")[1]


def deployment(document: dict, name: str) -> dict:
    return document["config"][f"{NS}deployments"][name]


def setter(stack: str, path: str, value: Any) -> tuple[str, Mutation]:
    """A mutation setting `path` (dots; `deployments.<name>...` or a full config key) in `stack`."""

    def mutate(document: dict) -> None:
        config = document["config"]
        if ":" in path.split(".")[0]:
            head, *rest = path.split(".")
        else:
            head, *rest = (NS + path).split(".")
        if not rest:
            config[head] = value
            return
        node = config.setdefault(head, {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        node[rest[-1]] = value

    return stack, mutate


def custom_non_gated(document: dict) -> None:
    gemma = deployment(document, "gemma-1b")
    gemma["model"] = "acme/tiny-open-1b"
    gemma["customModel"] = {"architecture": "LlamaForCausalLM", "paramsBillion": 1.0, "numLayers": 16,
                            "hiddenSize": 2048, "numAttentionHeads": 32, "numKvHeads": 8, "headDim": 64,
                            "vocabSize": 32000, "maxContext": 8192, "gated": False, "chatTemplate": True}


def custom_with_nan_params(document: dict) -> None:
    custom_non_gated(document)
    deployment(document, "gemma-1b")["customModel"]["paramsBillion"] = float("nan")


def autopilot_as_documented(document: dict) -> None:
    gke = document["config"][f"{NS}gke"]
    gke.pop("nodePools")
    gke["autopilot"] = True
    deployment(document, "llama-70b").pop("hardware")


# (id, (stack, mutation)) for structured mistakes; every one must end with a clean 0, 1 or 2.
MUTATIONS: list[tuple[str, tuple[str, Mutation]]] = [
    ("soft-delete-days-3", setter("dev", "bucket.softDeleteDays", 3)),
    ("region-is-a-zone", setter("dev", "gcp:region", "us-central1-a")),
    ("region-misspelt", setter("dev", "gcp:region", "us-cental1")),
    ("labels-not-gcp-labels", setter("prod", "labels", {"Team": "ML Platform"})),
    ("vertex-target-0.9", setter("dev", "deployments.llama-8b.scaling.target", 0.9)),
    ("nan-target", setter("prod", "deployments.llama-70b.scaling.target", float("nan"))),
    ("inf-target", setter("prod", "deployments.llama-70b.scaling.target", float("inf"))),
    ("nan-gpu-memory-utilization", setter("dev", "deployments.llama-8b.vllm.gpuMemoryUtilization", float("nan"))),
    ("inf-gpu-memory-utilization", setter("dev", "deployments.llama-8b.vllm.gpuMemoryUtilization", float("-inf"))),
    ("gke-min-replicas-0", setter("prod", "deployments.llama-70b.scaling.minReplicas", 0)),
    ("gke-target-0", setter("prod", "deployments.llama-70b.scaling.target", 0)),
    ("gke-kv-target-above-1", setter("prod", "deployments.llama-70b.scaling", {"metric": "kv_cache_usage", "target": 1.5,
                                                                              "minReplicas": 1, "maxReplicas": 2})),
    ("cloudrun-cpu-hundreds-of-digits", setter("dev", "deployments.gemma-1b.hardware.cpu", "9" * 400)),
    ("cloudrun-cpu-100", setter("dev", "deployments.gemma-1b.hardware.cpu", "100")),
    ("cloudrun-memory-512Gi", setter("dev", "deployments.gemma-1b.hardware.memory", "512Gi")),
    ("service-account-id-too-short", setter("dev", "namePrefix", "ab1")),
    ("gke-namespace-over-63", setter("prod", "deployments.llama-70b.gke.namespace", "n" * 64)),
    ("gke-namespace-custom-metrics", setter("prod", "deployments.llama-70b.gke.namespace", "custom-metrics")),
    ("gke-namespace-kube-system", setter("prod", "deployments.llama-70b.gke.namespace", "kube-system")),
    ("gke-extra-args-port", setter("prod", "deployments.llama-70b.vllm.extraArgs", ["--port=9000"])),
    ("gke-extra-args-host", setter("prod", "deployments.llama-70b.vllm.extraArgs", ["--host=127.0.0.1"])),
    ("gke-extra-args-tp", setter("prod", "deployments.llama-70b.vllm.extraArgs", ["--tensor-parallel-size=4"])),
    ("gke-extra-args-disable-log-stats", setter("prod", "deployments.llama-70b.vllm.extraArgs", ["--disable-log-stats"])),
    ("cloudrun-image-weights-non-gated-model", ("dev", custom_non_gated)),
    ("vertex-enable-lora-without-adapters", setter("dev", "deployments.llama-8b.vllm.extraArgs", ["--enable-lora"])),
    ("nan-params-billion", ("dev", custom_with_nan_params)),
    ("gke-zone-misspelt", setter("prod", "gke.location", "europe-west4-z")),
    ("gke-zone-without-tpu", setter("prod", "gke.location", "us-west1-a")),
    ("bucket-name-goog", setter("dev", "bucket.name", "goog-models")),
    ("bucket-name-double-dot", setter("dev", "bucket.name", "a..b")),
    ("vertex-labels", setter("dev", "deployments.llama-8b.labels", {"team": "x"})),
    ("gke-invalid-label-key", setter("prod", "deployments.llama-70b.labels", {"Bad Key": "x"})),
    ("autopilot-as-documented", ("prod", autopilot_as_documented)),
    ("token-in-hf-token-secret", setter("dev", "hfTokenSecret", "hf_" + "a" * 34)),
    ("token-in-extra-args", setter("prod", "deployments.llama-70b.vllm.extraArgs", ["--hf-token=hf_" + "b" * 34])),
    ("huge-int-max-model-len", setter("dev", "deployments.llama-8b.vllm.maxModelLen", 10 ** 400)),
    ("unicode-model", setter("dev", "deployments.llama-8b.model", "méta/ラマ")),
]

# Files that are not YAML config at all: (id, bytes).
RAW_FILES: list[tuple[str, bytes]] = [
    ("invalid-yaml", b"config:\n  gcp:project: [acme\n"),
    ("document-is-a-list", b"- config\n"),
    ("config-is-a-string", b"config: hello\n"),
    ("not-utf-8", b"config:\n  gcp:project: \xff\xfe\n"),
    ("unhashable-key", b"config:\n  ? {a: 1}\n  : 1\n"),
    ("huge-number", b"config:\n  llm-serving:environment: dev\n  llm-serving:labels:\n    team: " + b"9" * 5000 + b"\n"),
    ("duplicate-deployment", (ROOT / "Pulumi.dev.yaml").read_bytes()
     + b"  llm-serving:deployments:\n    other:\n      platform: vertex\n"),
]


def run_plan(tmp_path: Path, capsys, path: Path) -> tuple[int, str, str]:
    status = plan_module.main(["--file", str(path), "--out", str(tmp_path / "build")])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_clean(case: str, status: int, out: str, err: str) -> None:
    assert status in (0, 1, 2), f"{case}: exit {status}; stderr:\n{err}"
    assert "Traceback" not in err + out and "internal error" not in err, f"{case}: not a clean ending:\n{err}"
    if status == 2:
        assert err.strip(), f"{case}: exit 2 without a message"


@pytest.mark.parametrize("case,mutation", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mistake_ends_cleanly(tmp_path, capsys, case, mutation):
    stack, mutate = mutation
    document = copy.deepcopy(committed(stack))
    mutate(document)
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    assert_clean(case, *run_plan(tmp_path, capsys, path))


@pytest.mark.parametrize("case,data", RAW_FILES, ids=[r[0] for r in RAW_FILES])
def test_unreadable_file_is_exit_2_naming_the_file(tmp_path, capsys, case, data):
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_bytes(data)
    status, out, err = run_plan(tmp_path, capsys, path)
    assert_clean(case, status, out, err)
    assert status == 2 and err.startswith("Pulumi.dev.yaml: ") and "line " in err, f"{case}: exit {status}\n{err}"
