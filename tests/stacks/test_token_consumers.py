"""Who gets the Hugging Face token, in each committed stack: every resource whose inputs reference
the token's secret (by name or id), carry its value, or grant ``secretAccessor`` on it. With the
weights copied into the bucket, that is the weights-copy job (and its identity) alone, plus the
one documented exception: a Vertex AI Model Garden deployment of a gated model, whose resource
takes the model from the Hub only (README "How weights and caches reach a replica")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from offline.mocks import CloudMocks, is_wrapped_secret, unwrap_secrets
from tests.stacks.test_stacks import CANARY, STACKS, VERTEX, planned, planned_with_token

SECRET = "gcp:secretmanager/secret:Secret"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"
SECRET_ACCESSOR = "gcp:secretmanager/secretIamMember:SecretIamMember"
COPY_JOB = "gcp:cloudrunv2/job:Job"
# The token's value as a resource sees it: the canary given as a Pulumi secret, or what the mock engine
# answers when the program reads an existing Secret Manager secret.
TOKEN_VALUES = (CANARY, CloudMocks().secret_payload)


def _strings(value: Any):
    if is_wrapped_secret(value):
        yield from _strings(unwrap_secrets(value))
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _references(inputs: Any, secret_id: str) -> bool:
    """Inputs naming the secret (`<id>`, `projects/<p>/secrets/<id>[/versions/...]`) or holding the token."""
    for text in _strings(inputs):
        if text == secret_id or f"/secrets/{secret_id}" in text or any(v in text for v in TOKEN_VALUES):
            return True
    return False


def token_consumers(p, secret_id: str) -> dict[str, str]:
    """Resource name -> what it gets: 'value', 'reference' or 'accessor <member>'."""
    found: dict[str, str] = {}
    for r in p.registrations:
        if r.type in (SECRET, SECRET_VERSION):
            continue  # where the token is kept, not who reads it
        if not _references(dict(r.inputs), secret_id):
            continue
        if r.type == SECRET_ACCESSOR:
            found[r.name] = f"accessor {r.inputs['member']}"
        elif any(v in json.dumps(unwrap_secrets(dict(r.inputs)), default=str) for v in TOKEN_VALUES):
            found[r.name] = "value"
        else:
            found[r.name] = "reference"
    return found


def _copied(p) -> set[str]:
    """Deployments planned with a weights-copy job, from the stack outputs."""
    return {name for name, d in p.result.outputs["deployments"].items() if "weights" in d}


def _expected(p, stack: str) -> set[str]:
    outputs = p.result.outputs["deployments"]
    gated_copies = {name for name in _copied(p) if name in ("gemma-1b", "gemma-1b-gke", "llama-8b", "llama-70b")}  # all gated
    expected = {f"llm-{stack}-{name}-weights-job" for name in gated_copies}
    expected |= {f"llm-{stack}-hf-token-{name}-copy-accessor" for name in gated_copies}
    # Vertex AI: the Model Garden deployment resource takes the model from the Hub only.
    expected |= {f"llm-{stack}-{name}-deployment" for name, d in outputs.items() if d["platform"] == "vertex"}
    return expected


@pytest.mark.parametrize("stack", STACKS)
def test_every_committed_stack_copies_the_weights_of_cloud_run_and_gke(stack: str):
    p = planned(stack)
    outputs = p.result.outputs["deployments"]
    serving_from_bucket = {name for name, d in outputs.items() if d["platform"] in ("cloudrun", "gke")}
    assert serving_from_bucket and _copied(p) == serving_from_bucket, \
        f"Pulumi.{stack}.yaml: copy jobs for {sorted(_copied(p))}, Cloud Run and GKE deployments {sorted(serving_from_bucket)}"
    jobs = {r.name for r in p.of_type(COPY_JOB)}
    assert jobs == {f"llm-{stack}-{name}-weights-job" for name in serving_from_bucket}, f"Pulumi.{stack}.yaml: {jobs}"


@pytest.mark.parametrize("stack", STACKS)
def test_the_token_reaches_only_the_copy_jobs_and_vertex(stack: str):
    """The committed stack (the token in an existing Secret Manager secret)."""
    p = planned(stack)
    consumers = token_consumers(p, "hf-token")
    assert set(consumers) == _expected(p, stack), f"Pulumi.{stack}.yaml: the token reaches {consumers}"
    for name, how in consumers.items():
        if name.endswith("-copy-accessor"):
            deployment = name.removeprefix(f"llm-{stack}-hf-token-").removesuffix("-copy-accessor")
            assert how == f"accessor serviceAccount:llm-{stack}-{deployment}-copy@acme-llm-{stack}.iam.gserviceaccount.com", \
                f"{name}: {how}"


@pytest.mark.parametrize("stack", STACKS)
def test_the_token_value_reaches_only_vertex_when_given_as_a_pulumi_secret(stack: str):
    """The token given as a Pulumi secret: the copy job reads it from Secret Manager, so its value
    is in no resource's inputs but the secret version's and Vertex AI's."""
    p = planned_with_token(stack)
    consumers = token_consumers(p, f"llm-{stack}-hf-token")
    assert set(consumers) == _expected(p, stack), f"Pulumi.{stack}.yaml: the token reaches {consumers}"
    holders = {name for name, how in consumers.items() if how == "value"}
    vertex = {r.name for r in p.of_type(VERTEX)}
    assert holders == vertex, f"Pulumi.{stack}.yaml: the token's value is in {holders}"
    for job in p.of_type(COPY_JOB):
        (container,) = job.inputs["template"]["template"]["containers"]
        env = {e["name"]: e for e in container.get("envs", [])}
        assert env["HF_TOKEN"]["valueSource"]["secretKeyRef"]["version"] == "latest", f"{job.name}: {env}"
        assert "value" not in env["HF_TOKEN"], f"{job.name}: the token is a plain value"
