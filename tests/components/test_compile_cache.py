"""The compile cache sync (components/compile_cache.py): placed in the GKE workload as a restore init
container and a native save sidecar, refused when it would not work, and its two shell scripts run
for real with `sh`.

There is no gcloud here, so the script tests put a stand-in `gcloud` on PATH that implements the
two calls the scripts make (`storage ls` and `storage rsync --recursive SRC DST`) over a local
directory standing for the bucket, and a `curl` whose answer a file decides. What is tested is the
scripts' own logic: restore only what exists and never fail, save only after the server was
healthy, save again on SIGTERM.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from components.compile_cache import (
    BUCKET_ENV,
    CLOUD_RUN_CONTAINER,
    CLOUD_RUN_READY_PORT,
    RESTORE_CONTAINER,
    SAVE_CONTAINER,
    SYNC_IMAGE,
    CompileCacheSync,
    restore_script,
    save_script,
)
from components.gke_workload import TYPE_TOKEN
from components.model_bucket import ModelBucketArgs
from offline.manifests import write_kubernetes_manifests
from tests.components.test_foundation_components import bucket_args, inputs_of, run_bucket
from tests.components.test_gke_workload import K8S_VERSION, error_of, pod_spec, run_tutorial

PREFIX = "compile-cache/0123456789abcdef/"
SYNC = CompileCacheSync(prefix=PREFIX, local_dir="/compile-cache",
                        env=(("VLLM_XLA_CACHE_PATH", "/compile-cache/xla"),))
CACHED_CONTAINER_ENV = {"VLLM_XLA_CACHE_PATH": "/compile-cache/xla"}
PREFIXES = ("models--meta-llama--Llama-3.1-70B/", PREFIX)


def _cached(**overrides):
    return run_tutorial(compile_cache=SYNC, env=CACHED_CONTAINER_ENV, bucket_prefixes=PREFIXES, **overrides)


@pytest.fixture(scope="module")
def cached():
    return _cached()


def test_restore_runs_first_and_save_runs_beside_the_server(cached):
    spec = pod_spec(cached)
    init = spec["initContainers"]
    assert [c["name"] for c in init] == [RESTORE_CONTAINER, SAVE_CONTAINER], "llama-deployment: init containers"
    restore, save = init
    assert "restartPolicy" not in restore and save["restartPolicy"] == "Always", \
        "llama-deployment: the save container must be a native sidecar (restartPolicy Always)"
    for c in init:
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env[BUCKET_ENV] == "mock-project-llm-dev-models", f"llama-deployment {c['name']}: {env}"
        assert c["image"] == SYNC_IMAGE and "@sha256:" in c["image"], c["image"]
        assert c["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"]
        assert c["resources"]["limits"]["memory"], c["resources"]
    assert "http://127.0.0.1:8000/health" in save["command"][-1], save["command"]
    (server,) = spec["containers"]
    assert {"name": "compile-cache", "mountPath": "/compile-cache"} in server["volumeMounts"], server["volumeMounts"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "medium" not in volumes["compile-cache"]["emptyDir"], "compiled graphs belong on disk, not in RAM"


def test_without_a_compile_cache_the_pod_has_no_sync():
    spec = pod_spec(run_tutorial())
    assert not spec.get("initContainers"), spec.get("initContainers")


def test_manifest_with_the_sync_validates_against_kubernetes(cached, tmp_path):
    written = write_kubernetes_manifests(cached.registrations, tmp_path)
    deployment = next(p for p in written if p.name.startswith("deployment-"))
    manifest = yaml.safe_load(deployment.read_text())
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overrides, needle", [
    (dict(compile_cache=SYNC, env=CACHED_CONTAINER_ENV), "is not among bucket_prefixes"),
    (dict(compile_cache=SYNC, bucket_prefixes=PREFIXES), "container.env.VLLM_XLA_CACHE_PATH"),
    (dict(compile_cache=CompileCacheSync(prefix=PREFIX, local_dir="/data/cc", env=(("VLLM_XLA_CACHE_PATH", "/data/cc"),)),
          env={"VLLM_XLA_CACHE_PATH": "/data/cc"}, bucket_prefixes=PREFIXES), "on the bucket mount"),
    (dict(compile_cache=CompileCacheSync(prefix="compile-cache/", local_dir="/compile-cache",
                                         env=(("VLLM_XLA_CACHE_PATH", "/compile-cache/xla"),)),
          env=CACHED_CONTAINER_ENV, bucket_prefixes=("compile-cache/",)), "compile-cache/<hex key>/"),
    (dict(compile_cache=CompileCacheSync(prefix=PREFIX, local_dir="/compile-cache", image="google/cloud-sdk:latest",
                                         env=(("VLLM_XLA_CACHE_PATH", "/compile-cache/xla"),)),
          env=CACHED_CONTAINER_ENV, bucket_prefixes=PREFIXES), "compile_cache.image"),
])
def test_a_sync_that_would_not_work_is_refused(overrides, needle):
    message = error_of(**overrides)
    assert needle in message, message


def test_component_type_token_unchanged():
    # The sync adds children; it must not move the component (its URN) of deployed workloads.
    assert TYPE_TOKEN == "llm-serving:gke:VllmWorkload"


# ---------------------------------------------------------------------------
# The scripts, run for real.

FAKE_GCLOUD = """#!/bin/sh
# gcloud storage ls URL | gcloud storage rsync --recursive SRC DST, over $FAKE_BUCKETS/<bucket>/...
echo "$*" >> "$FAKE_BUCKETS/calls.log"
local_path() { echo "$1" | sed "s#^gs://#$FAKE_BUCKETS/#"; }
case "$2" in
  ls) [ -d "$(local_path "$3")" ] && [ -n "$(ls -A "$(local_path "$3")")" ] ;;
  rsync) src=$(local_path "$4"); dst=$(local_path "$5"); mkdir -p "$dst" && cp -R "$src/." "$dst/" ;;
  *) exit 2 ;;
esac
"""
FAKE_CURL = """#!/bin/sh
[ -f "$FAKE_BUCKETS/healthy" ]
"""


@pytest.fixture
def shell(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("gcloud", FAKE_GCLOUD), ("curl", FAKE_CURL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    buckets = tmp_path / "buckets"
    (buckets / "models").mkdir(parents=True)
    local = tmp_path / "local"
    local.mkdir()
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_BUCKETS": str(buckets), BUCKET_ENV: "models"}
    sync = CompileCacheSync(prefix=PREFIX, local_dir=str(local), env=(("VLLM_XLA_CACHE_PATH", str(local)),),
                            poll_seconds=1)
    return env, sync, buckets / "models" / PREFIX, local


def test_restore_copies_an_existing_cache_in(shell):
    env, sync, remote, local = shell
    remote.mkdir(parents=True)
    (remote / "graph.bin").write_text("compiled")
    done = subprocess.run(["sh", "-c", restore_script(sync)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (local / "graph.bin").read_text() == "compiled", done.stdout
    assert "restored from" in done.stdout


def test_restore_without_a_cache_succeeds_and_copies_nothing(shell):
    env, sync, _, local = shell
    done = subprocess.run(["sh", "-c", restore_script(sync)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and not list(local.iterdir()), (done.stdout, done.stderr)
    assert "nothing at" in done.stdout


def test_save_waits_for_health_then_saves_and_saves_again_on_sigterm(shell, tmp_path):
    env, sync, remote, local = shell
    buckets = Path(env["FAKE_BUCKETS"])
    output = tmp_path / "save.out"
    with open(output, "w") as handle:
        proc = subprocess.Popen(["sh", "-c", save_script(sync, "http://127.0.0.1:8000/health")], env=env,
                                stdout=handle, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    saved = f"saved to gs://models/{PREFIX}"
    try:
        (local / "early.bin").write_text("warming")
        time.sleep(2.5)
        assert not remote.exists(), "saved before the server was healthy"
        (buckets / "healthy").write_text("")
        deadline = time.monotonic() + 30
        while saved not in output.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (remote / "early.bin").exists(), f"not saved after the server became healthy: {output.read_text()}"
        (local / "late.bin").write_text("compiled after warm-up")
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = output.read_text()
    assert proc.returncode == 0, out
    assert (remote / "late.bin").read_text() == "compiled after warm-up", out
    assert out.count(saved) == 2, out


def test_a_pod_stopped_before_it_was_healthy_saves_nothing(shell):
    env, sync, remote, local = shell
    proc = subprocess.Popen(["sh", "-c", save_script(sync, "http://127.0.0.1:8000/health")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        (local / "half.bin").write_text("cut off mid-compile")
        time.sleep(1.5)
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0 and not remote.exists(), out


# ---------------------------------------------------------------------------
# The bucket's read options.


def test_bucket_hierarchical_namespace_and_anywhere_caches():
    result = run_bucket(bucket_args(hierarchical_namespace=True, anywhere_cache_zones=("us-central1-a", "us-central1-b"),
                                    anywhere_cache_ttl_seconds=7200))
    assert inputs_of(result, "models-bucket")["hierarchicalNamespace"] == {"enabled": True}
    for zone in ("us-central1-a", "us-central1-b"):
        cache = inputs_of(result, f"models-cache-{zone}")
        assert cache["zone"] == zone and cache["ttl"] == "7200s", f"models-cache-{zone}: {cache}"


@pytest.mark.parametrize("changes, needle", [
    (dict(hierarchical_namespace=True, versioning=True), "versioning"),
    (dict(anywhere_cache_zones=("europe-west4-a",)), "a zone of its region us-central1"),
    (dict(anywhere_cache_zones=("us-central1-a", "us-central1-a")), "listed twice"),
    (dict(anywhere_cache_ttl_seconds=60), "1 hour to 7 days"),
])
def test_bucket_read_options_refused_by_the_component(changes, needle):
    args: ModelBucketArgs = bucket_args(**changes)
    with pytest.raises(ValueError) as refused:
        run_bucket(args)
    assert needle in str(refused.value), str(refused.value)


# ---------------------------------------------------------------------------
# Cloud Run: one sidecar the server waits for.

GPU_SYNC = CompileCacheSync(prefix=PREFIX, local_dir="/compile-cache", env=(("VLLM_CACHE_ROOT", "/compile-cache/vllm"),))


def _cloudrun(**changes):
    from tests.components.test_cloudrun_component import CONTAINER, TUTORIAL, run, service_of

    container = dataclasses.replace(CONTAINER, env={**CONTAINER.env, "VLLM_CACHE_ROOT": "/compile-cache/vllm"})
    fields = {"container": container, "compile_cache": GPU_SYNC, "compile_cache_bucket": "mock-project-llm-dev-models",
              **changes}
    args = dataclasses.replace(TUTORIAL, **fields)
    return service_of(run(args))


def test_cloud_run_server_waits_for_the_restore_and_shares_the_cache_volume():
    template = _cloudrun()["template"]
    containers = {c["name"]: c for c in template["containers"]}
    server, sidecar = containers["vllm"], containers[CLOUD_RUN_CONTAINER]
    assert server["dependsOns"] == [CLOUD_RUN_CONTAINER], "gemma-service: vLLM must start after the restore"
    assert {"name": "compile-cache", "mountPath": "/compile-cache"} in server["volumeMounts"], server["volumeMounts"]
    assert {"name": "compile-cache", "mountPath": "/compile-cache"} in sidecar["volumeMounts"]
    assert sidecar["startupProbe"]["tcpSocket"]["port"] == CLOUD_RUN_READY_PORT, sidecar["startupProbe"]
    assert "ports" not in sidecar, "only the server takes traffic"
    assert sidecar["image"] == SYNC_IMAGE
    volumes = {v["name"]: v for v in template["volumes"]}
    assert volumes["compile-cache"]["emptyDir"]["medium"] == "MEMORY", volumes
    script = sidecar["commands"][-1]
    restore, save = restore_script(GPU_SYNC), save_script(GPU_SYNC, "http://127.0.0.1:8080/health")
    assert script.index(restore.splitlines()[0]) < script.index(f"http.server {CLOUD_RUN_READY_PORT}") \
        < script.index(save.splitlines()[0]), script
    assert "exit 0\n" not in script.split(f"http.server {CLOUD_RUN_READY_PORT}")[0], "the restore must not end the script"


def test_cloud_run_sync_without_its_bucket_or_env_is_refused():
    from tests.components.test_cloudrun_component import TUTORIAL, run

    with pytest.raises(ValueError) as refused:
        _cloudrun(compile_cache_bucket=None)
    assert "compile_cache_bucket" in str(refused.value)
    with pytest.raises(ValueError) as refused:
        run(dataclasses.replace(TUTORIAL, compile_cache=GPU_SYNC, compile_cache_bucket="b"))
    assert "container.env.VLLM_CACHE_ROOT" in str(refused.value)
