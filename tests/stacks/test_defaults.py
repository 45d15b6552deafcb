"""The config reference states the defaults resolve applies: each value below is what a
deployment gets with the setting unset, read from the resolved stack, then looked up in the
setting's documentation (the text the README's reference is generated from)."""

from __future__ import annotations

import dataclasses

import pytest

from stacks import defaults
from stacks.config import BucketConfig, GkeClusterConfig, HardwareConfig, ScalingConfig, VllmConfig, load
from stacks.resolve import resolve_stack
from stacks.schema import ConfigError

BASE = {
    "gcp:project": "acme-llm-test",
    "gcp:region": "us-central1",
    "llm-serving:environment": "staging",
    "llm-serving:hfTokenSecret": "hf-token",
    "llm-serving:gke": {"location": "us-east5-b",
                        "nodePools": {"tpu": {"machineType": "ct6e-standard-8t", "tpuTopology": "2x4", "maxNodes": 2}}},
    "llm-serving:deployments": {
        "run": {"platform": "cloudrun", "model": "google/gemma-3-1b-it"},
        "vertex": {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct"},
        "gke": {"platform": "gke", "model": "meta-llama/Llama-3.1-70B"},
        "kv": {"platform": "gke", "model": "meta-llama/Llama-3.1-70B", "scaling": {"metric": "kv_cache_usage"}},
    },
}


@pytest.fixture(scope="module")
def resolved():
    return resolve_stack(load(BASE, set(), source="Pulumi.test.yaml", stack="test"))


def doc(section, field_name: str) -> str:
    return next(f.metadata["doc"] for f in dataclasses.fields(section) if f.name == field_name)


def number(value: float) -> str:
    return f"{value:g}"


def test_replica_and_target_defaults_are_the_documented_ones(resolved):
    run, vertex, gke, kv = (resolved.deployments[n].scaling for n in ("run", "vertex", "gke", "kv"))
    min_doc, max_doc, target_doc = (doc(ScalingConfig, f) for f in ("min_replicas", "max_replicas", "target"))
    assert f"default {run.min_replicas} on Cloud Run, {gke.min_replicas} elsewhere" in min_doc, min_doc
    assert f"Vertex AI keeps at least {vertex.min_replicas}" in min_doc, min_doc
    assert f"default {vertex.max_replicas} (Cloud Run {run.max_replicas};" in max_doc, max_doc
    assert gke.max_replicas == gke.min_replicas and "GKE at least minReplicas" in max_doc, max_doc
    assert f"waiting requests (default {number(gke.target)})" in target_doc, target_doc
    assert f"0-1 (default {number(kv.target)})" in target_doc, target_doc
    assert f"duty cycle percent (default {number(vertex.target)})" in target_doc, target_doc


def test_vllm_defaults_are_the_documented_ones(resolved):
    vertex = resolved.deployments["vertex"]
    assert vertex.model.max_context > vertex.vllm.max_model_len, "pick a model whose context does not cap the default"
    assert f"default {vertex.vllm.max_model_len}," in doc(VllmConfig, "max_model_len")
    assert f"default {vertex.vllm.gpu_memory_utilization:.2f}" in doc(VllmConfig, "gpu_memory_utilization")


def test_names_and_cloud_run_sizes_are_the_documented_ones(resolved):
    names = resolved.names
    assert names.bucket == "acme-llm-test-llm-staging-models"
    assert "`<project>-<namePrefix>-models`" in doc(BucketConfig, "name")
    assert names.cluster == "llm-staging-gke"
    assert "`<namePrefix>-gke`" in doc(GkeClusterConfig, "name")
    hardware = resolved.deployments["run"].hardware
    assert f"(default {hardware.cpu};" in doc(HardwareConfig, "cpu"), (hardware.cpu, doc(HardwareConfig, "cpu"))
    assert f"(default {hardware.memory};" in doc(HardwareConfig, "memory"), (hardware.memory, doc(HardwareConfig, "memory"))


def test_cloud_run_concurrency_defaults_to_max_num_seqs(resolved):
    # No --max-num-seqs is rendered: Cloud Run lets through what vLLM's own default admits on an L4 (256).
    d = resolved.deployments["run"]
    assert d.vllm.max_num_seqs is None and d.fit.max_num_seqs == 256
    assert d.scaling.max_concurrency == d.fit.max_num_seqs, (d.scaling.max_concurrency, d.fit.max_num_seqs)
    assert resolved.deployments["vertex"].scaling.max_concurrency is None, "concurrency is a Cloud Run setting"


def test_vertex_refuses_zero_replicas_instead_of_raising_it_silently():
    values = dict(BASE, **{"llm-serving:deployments": {
        "vertex": {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct", "scaling": {"minReplicas": 0}}}})
    del values["llm-serving:gke"]
    with pytest.raises(ConfigError) as error:
        load(values, set(), source="Pulumi.test.yaml", stack="test")
    assert "llm-serving:deployments.vertex.scaling.minReplicas: got 0" in str(error.value)
    values["llm-serving:deployments"]["vertex"]["scaling"] = {}
    resolved = resolve_stack(load(values, set(), source="Pulumi.test.yaml", stack="test"))
    assert resolved.deployments["vertex"].scaling.min_replicas == defaults.VERTEX_REPLICA_FLOOR
