"""Cold starts on the committed stacks: startup budgets computed from the weights' size within each
platform's limit and shown in the plan; GKE compile caches on local disk, keyed, restored and saved
through the bucket prefix the workload alone may write; the bucket's read options."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from components.compile_cache import RESTORE_CONTAINER, SAVE_CONTAINER, SYNC_IMAGE
from offline.plan import startup_rows
from stacks.catalog import DATA_DIR
from stacks.checks import deployment_checks
from stacks.coldstart import startup_budget
from stacks.config import load
from stacks.findings import Findings
from stacks.resolve import resolve_stack
from stacks.schema import ConfigError
from tests.stacks.test_stacks import BUCKET, CLOUD_RUN, K8S_DEPLOYMENT, VERTEX, plan_values, planned, stack_values

NS = "llm-serving:"
BUCKET_PREFIXES = "gcp:storage/bucketIAMMember:BucketIAMMember"
ANYWHERE_CACHE = "gcp:storage/anywhereCache:AnywhereCache"


def _edited(stack: str, change: Callable[[dict[str, Any]], None]):
    values, secret_keys = stack_values(stack)
    values = copy.deepcopy(values)
    change(values)
    return plan_values(values, set(secret_keys), stack, f"Pulumi.{stack}.yaml")


def _deployment(values: dict[str, Any], name: str) -> dict[str, Any]:
    return values[f"{NS}deployments"][name]


def _expected_seconds(platform: str, kind: str, weight_gb: float) -> int:
    """The documented formula, from the data file, independently of stacks/coldstart.py."""
    data = yaml.safe_load((DATA_DIR / "startup.yaml").read_text())
    load = math.ceil(weight_gb / data["load_rates"][platform]["gb_per_s"])
    raw = (data["fixed_seconds"] + load + data["compile_seconds"][kind]["seconds"]) * data["safety_factor"]
    return math.ceil(math.ceil(raw) / 60) * 60


def _pod(p, name: str) -> dict:
    return p.one(K8S_DEPLOYMENT, name).inputs["spec"]["template"]["spec"]


def test_gke_startup_probe_window_is_the_estimate_from_weight_bytes():
    p = planned("prod")
    d = p.result.resolved.deployments["llama-70b"]
    weight_gb = d.model.params_billion * d.model.weight_bytes_per_param
    expected = _expected_seconds("gke-tpu", "tpu", weight_gb)
    (server,) = _pod(p, "llm-prod-llama-70b-deployment")["containers"]
    probe = server["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] == expected, \
        f"llm-prod-llama-70b-deployment: startup probe {probe}, expected a {expected} s window"


def test_cloud_run_startup_probe_is_the_estimate_within_its_limit():
    p = planned("dev")
    d = p.result.resolved.deployments["gemma-1b"]
    expected = _expected_seconds("cloudrun", "gpu", d.model.params_billion * d.model.weight_bytes_per_param)
    service = p.one(CLOUD_RUN)
    probe = service.inputs["template"]["containers"][0]["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] == expected <= 1800, \
        f"llm-dev-gemma-1b: startup probe {probe}, expected {expected} s"


def test_a_cold_start_past_cloud_runs_window_is_capped_and_warned():
    # No catalog model that fits one Cloud Run GPU loads for half an hour at the planning rate, so the
    # budget is asked for 400 GB of weights directly, then checked as resolve would have stored it.
    budget = startup_budget("cloudrun", "gpu", 400e9, None, "cloudrun.startupTimeoutSeconds")
    assert budget.estimate_seconds > 1800 and budget.seconds == 1800 and budget.capped, budget
    resolved = resolve_stack(_config("dev"))
    d = dataclasses.replace(resolved.deployments["gemma-1b"], startup=budget)
    found = Findings("gemma-1b")
    deployment_checks(d, resolved.config, found)
    warnings = [c.message for c in found.items if "capped" in c.message]
    assert warnings and str(budget.estimate_seconds) in warnings[0] and "1800 s" in warnings[0], \
        [c.message for c in found.items]


def test_a_configured_budget_wins_and_is_warned_when_below_the_estimate():
    p = _edited("prod", lambda v: _deployment(v, "llama-70b").setdefault("gke", {}).update(startupTimeoutSeconds=600))
    (server,) = _pod(p, "llm-prod-llama-70b-deployment")["containers"]
    probe = server["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] == 600, probe
    key = f"{NS}deployments.llama-70b.gke.startupTimeoutSeconds"
    assert any(key in c.message and "below the estimated" in c.message for c in p.result.checks), \
        [c.message for c in p.result.checks]


def test_vertex_keeps_its_deployment_timeout_and_the_plan_shows_the_estimate():
    p = planned("dev")
    vertex = p.one(VERTEX)
    timeout = vertex.inputs["modelConfig"]["containerSpec"]["deploymentTimeout"]
    rows = {r["deployment"]: r for r in startup_rows(p.result.resolved)}
    assert timeout == f"{rows['llama-8b']['seconds']}s" and rows["llama-8b"]["limit_seconds"] == 7200, (timeout, rows)
    assert rows["llama-8b"]["estimate_seconds"] <= 7200


@pytest.mark.parametrize("stack", ("dev", "staging", "prod"))
def test_plan_shows_every_deployments_startup_arithmetic(stack: str):
    p = planned(stack)
    assert p.result.resolved is not None
    rows = startup_rows(p.result.resolved)
    assert {r["deployment"] for r in rows} == set(p.result.resolved.deployments), rows
    from offline.plan import render_text
    text = render_text(p.result)
    assert "Startup budgets" in text
    assert p.result.as_json()["startup"] == rows, "the JSON plan must carry the same startup rows"
    for r in rows:
        line = next(line for line in text.splitlines() if line.strip().startswith(r["deployment"] + " ")
                    and f"{r['estimate_seconds']} s" in line)
        assert f"{r['seconds']} s" in line, line


# ---------------------------------------------------------------------------
# Compile caches on GKE.


def test_tpu_compile_cache_is_local_and_synced_through_its_keyed_prefix():
    p = planned("prod")
    d = p.result.resolved.deployments["llama-70b"]
    pod = _pod(p, "llm-prod-llama-70b-deployment")
    (server,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["VLLM_XLA_CACHE_PATH"].startswith("/compile-cache/"), env
    assert not any(str(v).startswith("/data") for k, v in env.items() if "CACHE" in k), \
        f"llm-prod-llama-70b-deployment: a compile cache on the bucket mount: {env}"
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    assert mounts["compile-cache"] == "/compile-cache", mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["compile-cache"]["emptyDir"].get("medium") != "Memory", volumes["compile-cache"]
    init = {c["name"]: c for c in pod["initContainers"]}
    assert list(init) == [RESTORE_CONTAINER, SAVE_CONTAINER], list(init)
    assert init[SAVE_CONTAINER]["restartPolicy"] == "Always", "the save container must be a native sidecar"
    assert "restartPolicy" not in init[RESTORE_CONTAINER]
    prefix = d.compile_cache.prefix
    for container in init.values():
        script = container["command"][-1]
        assert f"gs://$CACHE_BUCKET/{prefix}" in script, script
        assert container["image"].endswith(SYNC_IMAGE), container["image"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/health" in init[SAVE_CONTAINER]["command"][-1]


def test_workload_may_write_its_cache_prefix_and_no_other():
    p = planned("prod")
    prefix = p.result.resolved.deployments["llama-70b"].compile_cache.prefix
    grant = p.one(BUCKET_PREFIXES, "llm-prod-llama-70b-bucket-prefixes")
    condition = grant.inputs["condition"]["expression"]
    assert f'/objects/{prefix}")' in condition, f"llm-prod-llama-70b-bucket-prefixes: {condition}"
    assert 'objects/compile-cache/")' not in condition and "xla-cache" not in condition, condition
    assert grant.inputs["role"] == "roles/storage.objectUser"


def _config(stack: str, change: Callable[[dict[str, Any]], None] | None = None):
    values, secret_keys = stack_values(stack)
    values = copy.deepcopy(values)
    if change:
        change(values)
    return load(values, set(secret_keys), source=f"Pulumi.{stack}.yaml", stack=stack)


def _key(stack: str, change: Callable[[dict[str, Any]], None] | None = None) -> str:
    cache = resolve_stack(_config(stack, change)).deployments["llama-70b"].compile_cache
    assert cache is not None, "llama-70b: no compile cache"
    return cache.prefix


@pytest.mark.parametrize("what, change", [
    ("revision", lambda v: _deployment(v, "llama-70b").update(modelRevision="1" * 40)),
    ("flags", lambda v: _deployment(v, "llama-70b").setdefault("vllm", {}).update(maxModelLen=2048)),
    ("image", lambda v: _deployment(v, "llama-70b").update(image="vllm/vllm-tpu:v0.11.1", vllmVersion="0.11.1")),
    ("topology", lambda v: v[f"{NS}gke"]["nodePools"][next(iter(v[f"{NS}gke"]["nodePools"]))].update(
        machineType="ct6e-standard-4t", tpuTopology="2x2")),
    ("model", lambda v: _deployment(v, "llama-70b").update(model="meta-llama/Llama-3.1-70B-Instruct")),
])
def test_compile_cache_key_changes_with_what_compiled_graphs_depend_on(what, change):
    assert _key("prod", change) != _key("prod"), f"changing the {what} kept the compile cache key"


def test_compile_cache_key_is_stable_for_the_same_configuration():
    # staging and prod run the 70B with the same model, flags, slice and image.
    assert _key("staging") == _key("prod") == _key("prod")


def test_compile_cache_can_be_turned_off():
    p = _edited("prod", lambda v: _deployment(v, "llama-70b").setdefault("gke", {}).update(compileCache=False))
    pod = _pod(p, "llm-prod-llama-70b-deployment")
    assert not pod.get("initContainers"), pod.get("initContainers")
    # The pod only reads (its weights); without a cache it writes nothing to the bucket.
    grants = {r.name: r.inputs for r in p.of_type(BUCKET_PREFIXES) if r.name.startswith("llm-prod-llama-70b-bucket-")}
    assert "llm-prod-llama-70b-bucket-prefixes" not in grants, grants
    assert all("compile-cache" not in g["condition"]["expression"] for g in grants.values()), grants
    assert {g["role"] for g in grants.values()} == {"roles/storage.objectViewer"}, grants


# ---------------------------------------------------------------------------
# A bucket built for reads.


def test_bucket_read_options_reach_the_bucket_and_its_caches():
    def reads(values):
        values[f"{NS}bucket"] = {"hierarchicalNamespace": True, "anywhereCacheZones": ["europe-west4-b"],
                                 "anywhereCacheTtlSeconds": 7200}

    p = _edited("prod", reads)
    bucket = p.one(BUCKET)
    assert bucket.inputs["hierarchicalNamespace"] == {"enabled": True}, bucket.inputs
    assert bucket.inputs["uniformBucketLevelAccess"] is True
    (cache,) = p.of_type(ANYWHERE_CACHE)
    assert cache.inputs["zone"] == "europe-west4-b" and cache.inputs["ttl"] == "7200s", cache.inputs


def test_bucket_read_options_are_off_by_default():
    p = planned("prod")
    assert "hierarchicalNamespace" not in p.one(BUCKET).inputs
    assert not p.of_type(ANYWHERE_CACHE)


@pytest.mark.parametrize("bucket, needle", [
    ({"anywhereCacheZones": ["us-central1-a"]}, "the bucket is in europe-west4"),
    ({"anywhereCacheZones": ["europe-west4-q"]}, "not a known zone"),
    ({"anywhereCacheZones": ["europe-west4-a", "europe-west4-a"]}, "list each zone once"),
    ({"hierarchicalNamespace": True, "versioning": True}, "versioning"),
    ({"anywhereCacheTtlSeconds": 60}, "anywhereCacheTtlSeconds"),
])
def test_bad_bucket_read_options_are_refused_with_the_key(bucket, needle):
    values, _ = stack_values("prod")
    values = copy.deepcopy(values)
    values[f"{NS}bucket"] = bucket
    with pytest.raises(ConfigError) as refused:
        load(values, set(), source="Pulumi.prod.yaml", stack="prod")
    assert f"{NS}bucket." in str(refused.value) and needle in str(refused.value), str(refused.value)


def test_cloud_run_compile_cache_sidecar_and_its_prefix_grant():
    p = planned("dev")
    prefix = p.result.resolved.deployments["gemma-1b"].compile_cache.prefix
    template = p.one(CLOUD_RUN).inputs["template"]
    names = [c["name"] for c in template["containers"]]
    assert "compile-cache" in names, names
    grant = p.one(BUCKET_PREFIXES, "llm-dev-models-gemma-1b-compile-cache-storage-objectuser")
    assert grant.inputs["condition"]["expression"].endswith(f'/objects/{prefix}")'), grant.inputs["condition"]
    assert grant.inputs["role"] == "roles/storage.objectUser"


def test_the_sync_image_is_among_the_images_prod_must_pin_by_digest():
    from stacks.resolve import support_images

    resolved = resolve_stack(_config("prod"))
    refs = [ref for ref, _, _ in support_images(resolved.config, resolved.deployments.values())]
    assert SYNC_IMAGE in refs and "@sha256:" in SYNC_IMAGE, refs
