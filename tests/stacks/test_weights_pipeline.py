"""One weights pipeline: every committed stack copies each Cloud Run and GKE model revision into the
bucket with its weights-copy job, and serves it from there (vLLM's Run:ai streamer from gs://);
Vertex AI keeps the Hub download; the baked image and the Hub download stay available on Cloud Run
as options. Each test names the resource or deployment it judges."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from offline.plan import plan
from stacks import defaults
from tests.stacks.test_stacks import CLOUD_RUN, K8S_DEPLOYMENT, K8S_SECRET, VERTEX, planned, stack_values

NS = "llm-serving:"
COPY_JOB = "gcp:cloudrunv2/job:Job"
BUCKET_GRANT = "gcp:storage/bucketIAMMember:BucketIAMMember"


def _variant(stack: str, deployment: str, **changes: Any):
    values, secret_keys = stack_values(stack)
    values = copy.deepcopy(values)
    target = values[f"{NS}deployments"][deployment]
    for path, value in changes.items():
        node = target
        *parents, leaf = path.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    result = plan(values, set(secret_keys), stack=stack, source=f"Pulumi.{stack}.yaml")
    assert result.run is not None and not result.failed, f"Pulumi.{stack}.yaml variant {changes}: {result.checks}"
    return result


def _one(registrations, type_: str, name: str):
    matches = [r for r in registrations if r.type == type_ and r.name == name]
    assert len(matches) == 1, f"expected one {type_} {name}, got {[r.name for r in registrations if r.type == type_]}"
    return matches[0]


def _args(container: dict) -> dict[str, str]:
    return dict(a.split("=", 1) if "=" in a else (a, "") for a in container["args"])


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_cloud_run_streams_the_copied_revision_from_the_bucket(stack: str):
    p = planned(stack)
    revision = stack_values(stack)[0][f"{NS}deployments"]["gemma-1b"]["modelRevision"]
    bucket = p.result.outputs["model_bucket"]
    service = p.one(CLOUD_RUN, f"llm-{stack}-gemma-1b-service")
    (vllm, *_) = service.inputs["template"]["containers"]
    args = _args(vllm)
    uri = f"gs://{bucket}/models/google/gemma-3-1b-it/{revision}"
    assert args["--model"] == uri and args["--load-format"] == "runai_streamer", f"{service.name}: {vllm['args']}"
    assert "--revision" not in args, f"{service.name}: --revision with a bucket path: {vllm['args']}"
    streamer = json.loads(args["--model-loader-extra-config"])
    memory_gib = int(service.inputs["template"]["containers"][0]["resources"]["limits"]["memory"].removesuffix("Gi"))
    assert streamer == {"concurrency": defaults.STREAMER_CONCURRENCY,
                        "memory_limit": int(memory_gib * defaults.STREAMER_CLOUDRUN_MEMORY_SHARE * 2**30)}, \
        f"{service.name}: {streamer}"
    env = {e["name"]: e for e in vllm.get("envs", [])}
    assert "HF_TOKEN" not in env and env["HF_HUB_OFFLINE"]["value"] == "1", f"{service.name}: env {env}"
    assert p.result.outputs["deployments"]["gemma-1b"]["weights"]["uri"] == uri
    # The service is rolled out only after its copy job (the job is ready once the copy completed).
    job = p.one(COPY_JOB, f"llm-{stack}-gemma-1b-weights-job")
    assert job.inputs["template"]["template"]["containers"][0]["image"] == vllm["image"], \
        f"{job.name}: runs another image than the service it fills: {job.inputs['template']}"
    job_component = next(r for r in p.registrations if r.urn == job.parent)
    assert job_component.urn in service.dependencies or job.urn in service.dependencies, \
        f"{service.name} does not wait for {job.name}: {service.dependencies}"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_gke_streams_the_copy_and_holds_no_token(stack: str):
    p = planned(stack)
    revision = stack_values(stack)[0][f"{NS}deployments"]["llama-70b"]["modelRevision"]
    bucket = p.result.outputs["model_bucket"]
    deployment = p.one(K8S_DEPLOYMENT, f"llm-{stack}-llama-70b-deployment")
    (vllm,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    args = _args(vllm)
    assert args["--model"] == f"gs://{bucket}/models/meta-llama/Llama-3.1-70B/{revision}", f"{deployment.name}: {vllm['args']}"
    assert args["--load-format"] == "runai_streamer" and "--download-dir" not in args, f"{deployment.name}: {vllm['args']}"
    # TPU: no "distributed" (a GPU option); the TPU backend streams in one process.
    assert json.loads(args["--model-loader-extra-config"]) == {"concurrency": defaults.STREAMER_CONCURRENCY}
    names = {e["name"] for e in vllm["env"]}
    assert not names & {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}, f"{deployment.name}: token env {names}"
    assert not [r.name for r in p.of_type(K8S_SECRET) if r.name.endswith("-hf-token")], "a Kubernetes Secret holds the token"
    principal = p.result.outputs["deployments"]["llama-70b"]["bucket_access"]
    assert f"read objects under models/meta-llama/Llama-3.1-70B/{revision}/" in principal, principal
    grants = [r for r in p.of_type(BUCKET_GRANT) if r.name.startswith(f"llm-{stack}-llama-70b-bucket-")]
    writable = [r.inputs["condition"]["expression"] for r in grants if r.inputs["role"] == "roles/storage.objectUser"]
    assert writable and all("/objects/models/" not in e for e in writable), f"the pod may write weights: {writable}"


def test_vertex_keeps_the_hub_download_with_its_revision():
    p = planned("dev")
    endpoint = p.one(VERTEX, "llm-dev-llama-8b-deployment")
    args = endpoint.inputs["modelConfig"]["containerSpec"]["args"]
    assert "--model=meta-llama/Llama-3.1-8B-Instruct" in args and "--revision=0e9e39f249a16976918f6564b8830bc894c89659" in args, \
        f"{endpoint.name}: {args}"
    assert not [r for r in p.of_type(COPY_JOB) if "llama-8b" in r.name], "a copy job for Vertex AI, which cannot read it"


def test_a_new_revision_copies_again_and_serves_the_new_prefix():
    before = planned("staging")
    after = _variant("staging", "gemma-1b", modelRevision="0" * 40)
    job_before = _one(before.registrations, COPY_JOB, "llm-staging-gemma-1b-weights-job")
    job_after = _one(after.run.registrations, COPY_JOB, "llm-staging-gemma-1b-weights-job")
    assert job_before.inputs["runExecutionToken"] != job_after.inputs["runExecutionToken"], \
        f"{job_after.name}: the execution token did not change with the revision, so no copy would run"
    assert "0" * 40 in job_after.inputs["template"]["template"]["containers"][0]["args"], job_after.name
    again = _variant("staging", "gemma-1b")  # a fresh run of the unchanged stack
    assert _one(again.run.registrations, COPY_JOB, job_before.name).inputs["runExecutionToken"] == \
        job_before.inputs["runExecutionToken"], f"{job_before.name}: an unchanged plan must not run the copy again"
    service = _one(after.run.registrations, CLOUD_RUN, "llm-staging-gemma-1b-service")
    assert any(a.endswith("/models/google/gemma-3-1b-it/" + "0" * 40) for a in service.inputs["template"]["containers"][0]["args"]), \
        f"{service.name}: still serves the old revision"


def test_the_baked_image_stays_an_option():
    result = _variant("dev", "gemma-1b", cloudrun__weights="image")
    names = {r.name for r in result.run.registrations}
    assert "llm-dev-gemma-1b-image-build" in names and "llm-dev-gemma-1b-weights-job" not in names, sorted(names)
    assert "llm-dev-hf-token-gemma-1b-build-accessor" in names, "the image build reads the token"
    service = _one(result.run.registrations, CLOUD_RUN, "llm-dev-gemma-1b-service")
    assert "--load-format=runai_streamer" not in service.inputs["template"]["containers"][0]["args"], service.name


def test_weights_placed_by_hand_need_no_copy_job():
    result = _variant("dev", "gemma-1b", cloudrun__weights="gcs", cloudrun__gcsPrefix="hand/gemma")
    names = {r.name for r in result.run.registrations}
    assert "llm-dev-gemma-1b-weights-job" not in names and "llm-dev-gemma-1b-copy-sa" not in names, sorted(names)
    service = _one(result.run.registrations, CLOUD_RUN, "llm-dev-gemma-1b-service")
    assert "--model=/models/hand/gemma" in service.inputs["template"]["containers"][0]["args"], service.name


def test_gpu_tensor_parallel_ranks_stream_their_own_parts():
    """On a GKE GPU pool with two L4s (tensor parallel 2), each rank streams its part ("distributed")."""
    from stacks.config import load
    from stacks.resolve import resolve_stack

    values, secret_keys = stack_values("staging")
    values = copy.deepcopy(values)
    values[f"{NS}gke"]["nodePools"]["l4x2"] = {"machineType": "g2-standard-24", "minNodes": 0, "maxNodes": 1}
    values[f"{NS}deployments"]["llama-8b-gke"] = {
        "platform": "gke", "model": "meta-llama/Llama-3.1-8B-Instruct",
        "modelRevision": "0e9e39f249a16976918f6564b8830bc894c89659", "vllm": {"maxModelLen": 4096},
        "hardware": {"nodePool": "l4x2"}, "gke": {"allowedCidrs": ["10.128.0.0/9"]}}
    resolved = resolve_stack(load(values, secret_keys, source="Pulumi.staging.yaml", stack="staging"))
    d = resolved.deployments["llama-8b-gke"]
    args = _args({"args": list(d.container.args)})
    assert args["--tensor-parallel-size"] == "2", d.container.args
    assert json.loads(args["--model-loader-extra-config"]) == {"concurrency": defaults.STREAMER_CONCURRENCY,
                                                               "distributed": True}, d.container.args
