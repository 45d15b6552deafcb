"""WeightsCopyJob under the mock engine: what the job runs, what it may touch, when it runs again."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from components.weights_copy import JOB_SOURCE, WeightsCopyJob, WeightsCopyJobArgs, execution_token
from offline.runner import run_under_mocks

REVISION = "dcc83ea841ab6100d6b47a070329e1ba4cf78752"
ARGS = WeightsCopyJobArgs(
    project="mock-project", region="us-central1", job_name="llm-dev-gemma-weights", model_id="google/gemma-3-1b-it",
    revision=REVISION, bucket="mock-models", prefix=f"models/google/gemma-3-1b-it/{REVISION}",
    image="vllm/vllm-openai:v0.32.0", service_account_email="copy@mock-project.iam.gserviceaccount.com",
    hf_token_secret="projects/mock-project/secrets/hf-token",
)


def run(**changes):
    args = dataclasses.replace(ARGS, **changes)
    return run_under_mocks(lambda: WeightsCopyJob("gemma-weights", args))


def test_the_job_runs_the_repository_code_with_the_token_by_reference():
    result = run()
    job = result.named("gemma-weights-job")
    template = job.inputs["template"]["template"]
    (container,) = template["containers"]
    assert container["commands"] == ["python3", f"/opt/weights-copy/{JOB_SOURCE.name}"], f"{job.name}: {container}"
    assert container["args"] == ["--repo", "google/gemma-3-1b-it", "--revision", REVISION, "--bucket", "mock-models",
                                 "--prefix", f"models/google/gemma-3-1b-it/{REVISION}"], f"{job.name}: {container['args']}"
    token = next(e for e in container["envs"] if e["name"] == "HF_TOKEN")
    assert token == {"name": "HF_TOKEN", "valueSource": {"secretKeyRef": {
        "secret": "projects/mock-project/secrets/hf-token", "version": "latest"}}}, f"{job.name}: {token}"
    assert template["serviceAccount"] == ARGS.service_account_email and template["maxRetries"] == 1, job.name
    code = result.named("gemma-weights-code")
    assert code.inputs["name"] == "jobs/weights-copy/llm-dev-gemma-weights/weights_copy.py", code.inputs
    # The repository's file, by a path relative to the project root: another checkout plans no change.
    assert code.inputs["source"]["path"] == "jobs/weights_copy.py", f"{code.name}: {code.inputs['source']}"
    assert template["volumes"][0]["gcs"] == {"bucket": "mock-models", "readOnly": True,
                                             "mountOptions": ["only-dir=jobs/weights-copy/llm-dev-gemma-weights"]}
    expected_token = execution_token(ARGS, hashlib.sha256(JOB_SOURCE.read_bytes()).hexdigest())
    assert job.inputs["runExecutionToken"] == expected_token, f"{job.name}: {job.inputs['runExecutionToken']}"


def test_a_public_model_gets_no_token():
    job = run(hf_token_secret=None).named("gemma-weights-job")
    names = [e["name"] for e in job.inputs["template"]["template"]["containers"][0]["envs"]]
    assert "HF_TOKEN" not in names, f"{job.name}: {names}"


def test_the_job_writes_only_its_model_and_reads_only_its_code():
    result = run()
    grants = {r.name: r.inputs for r in result.registrations if r.type == "gcp:storage/bucketIAMMember:BucketIAMMember"}
    writer = grants["gemma-weights-model-writer"]
    assert writer["role"] == "roles/storage.objectUser" and writer["condition"]["expression"] == \
        'resource.name.startsWith("projects/_/buckets/mock-models/objects/models/google/gemma-3-1b-it/")', writer
    reader = grants["gemma-weights-code-reader"]
    assert reader["role"] == "roles/storage.objectViewer" and reader["condition"]["expression"].endswith(
        '/objects/jobs/weights-copy/llm-dev-gemma-weights/")'), reader
    assert set(grants) == {"gemma-weights-list", "gemma-weights-code-reader", "gemma-weights-model-writer"}, sorted(grants)


def test_the_execution_token_changes_with_what_a_copy_depends_on():
    base = execution_token(ARGS, "code-a")
    assert base == execution_token(ARGS, "code-a")
    for changed in (dataclasses.replace(ARGS, revision="0" * 40, prefix="models/google/gemma-3-1b-it/" + "0" * 40),
                    dataclasses.replace(ARGS, image="vllm/vllm-openai:v0.33.0")):
        assert execution_token(changed, "code-a") != base, changed
    assert execution_token(ARGS, "code-b") != base
    assert execution_token(dataclasses.replace(ARGS, labels={"team": "x"}), "code-a") == base, "labels must not rerun it"


@pytest.mark.parametrize("change, message", [
    ({"prefix": "models/other/model/x"}, "prefix: got 'models/other/model/x'"),
    ({"prefix": f"models/google/gemma-3-1b-it/{REVISION}/"}, "prefix:"),
    ({"image": "vllm/vllm-openai:latest"}, "image:"),
    ({"job_name": "Bad_Name"}, "job_name: got 'Bad_Name'"),
    ({"model_id": "no-slash"}, "model_id: got 'no-slash'"),
    ({"timeout_seconds": 60}, "timeout_seconds: got 60"),
])
def test_bad_arguments_are_refused_naming_the_field(change, message):
    with pytest.raises(ValueError) as caught:
        run(**change)
    assert message in str(caught.value), str(caught.value)
