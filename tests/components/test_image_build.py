"""ModelImageBuild under the mock engine, and the build files it ships."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pulumi
import pulumi_gcp as gcp
import pytest
import yaml

from components.image_build import (
    BUILD_DIR,
    PROJECT_ROOT,
    TYPE_TOKEN,
    ModelImageBuild,
    ModelImageBuildArgs,
)
from offline.mocks import mask_secrets
from offline.runner import RunResult, run_under_mocks

COMMAND = "command:local:Command"
SHIPPED = PROJECT_ROOT / BUILD_DIR
REPO = "us-central1-docker.pkg.dev/mock-project/serving"
BASE = "us-central1-docker.pkg.dev/mock-project/dockerhub/vllm/vllm-openai:v0.32.0"

TUTORIAL = ModelImageBuildArgs(
    project="mock-project",
    region="us-central1",
    repository_url=REPO,
    image_name="vllm-gemma-3-1b-it",
    model_id="google/gemma-3-1b-it",
    model_revision="0123456789abcdef0123456789abcdef01234567",
    base_image=BASE,
    hf_token="llm-dev-hf-token",
    build_service_account="llm-dev-build@mock-project.iam.gserviceaccount.com",
)


def run(args: ModelImageBuildArgs, name: str = "gemma-image") -> RunResult:
    def program() -> None:
        build = ModelImageBuild(name, args)
        pulumi.export("image_by_digest", build.image_by_digest)
        pulumi.export("image_tag", build.image_tag)

    return run_under_mocks(program)


def command_of(result: RunResult, name: str = "gemma-image") -> dict:
    return dict(result.named(f"{name}-build").inputs)


def substitutions_of(script: str) -> dict[str, str]:
    match = re.search(r"--substitutions=(\S+)", script)
    assert match, f"gemma-image-build: no --substitutions in {script!r}"
    return dict(pair.split("=", 1) for pair in match.group(1).strip("'").split(","))


def copy_build_dir(tmp_path: Path) -> Path:
    target = tmp_path / "vllm-baked"
    shutil.copytree(SHIPPED, target)
    return target


# ---------------------------------------------------------------------------
# The Command.


def test_build_command_submits_cloud_build_then_prints_only_the_digest():
    result = run(TUTORIAL)
    cmd = command_of(result)
    script = cmd["create"]
    where = "gemma-image-build"
    assert script.startswith("set -euo pipefail\n"), f"{where}: script does not start strict: {script!r}"
    assert cmd["interpreter"] == ["/bin/bash", "-c"], f"{where}: interpreter {cmd.get('interpreter')}"
    assert cmd["dir"] == BUILD_DIR, f"{where}: dir {cmd.get('dir')}"
    lines = script.strip().splitlines()
    assert len(lines) == 3, f"{where}: expected set/submit/describe, got {lines}"
    submit, describe = lines[1], lines[2]
    for flag in ("gcloud builds submit . ", "--config=cloudbuild.yaml", "--region=us-central1", "--project=mock-project",
                 "--service-account=projects/mock-project/serviceAccounts/llm-dev-build@mock-project.iam.gserviceaccount.com"):
        assert flag in submit, f"{where}: {flag!r} missing from {submit!r}"
    assert submit.endswith("1>&2"), f"{where}: the build log must go to stderr so stdout is only the digest: {submit!r}"
    tag = substitutions_of(script)["_IMAGE"].rsplit(":", 1)[1]
    assert describe == (f"gcloud artifacts docker images describe {REPO}/vllm-gemma-3-1b-it:{tag} --project=mock-project "
                        "--format='value(image_summary.digest)'"), f"{where}: describe line {describe!r}"
    assert substitutions_of(script) == {
        "_MODEL_ID": "google/gemma-3-1b-it",
        "_MODEL_REVISION": TUTORIAL.model_revision,
        "_IMAGE": f"{REPO}/vllm-gemma-3-1b-it:{tag}",
        "_BASE_IMAGE": BASE,
        "_HF_SECRET": "projects/mock-project/secrets/llm-dev-hf-token/versions/latest",
    }, f"{where}: substitutions {substitutions_of(script)}"
    assert re.fullmatch(r"[0-9a-f]{16}", tag), f"{where}: tag {tag!r} is not a short hash"


def test_image_is_exposed_by_the_digest_the_build_printed():
    result = run(TUTORIAL)
    image = result.outputs["image_by_digest"].value
    assert re.fullmatch(rf"{re.escape(REPO)}/vllm-gemma-3-1b-it@sha256:[0-9a-f]{{64}}", image), \
        f"gemma-image: image_by_digest {image!r}"
    other = run(dataclasses.replace(TUTORIAL, model_revision="fedcba9876543210fedcba9876543210fedcba98"))
    assert other.outputs["image_by_digest"].value != image, "gemma-image: a different build yielded the same digest"


def test_build_is_a_child_of_the_component():
    result = run(TUTORIAL)
    assert result.named("gemma-image").type == TYPE_TOKEN, f"gemma-image: type {result.named('gemma-image').type}"
    [cmd] = result.of_type(COMMAND)
    assert f"{TYPE_TOKEN}$" in cmd.urn, f"{cmd.name}: not parented to the component ({cmd.urn})"


def test_resource_names_are_accepted_for_secret_and_service_account():
    result = run(dataclasses.replace(TUTORIAL, hf_token="projects/other/secrets/hf", hf_token_version="3",
                                     build_service_account="projects/mock-project/serviceAccounts/b@x.iam.gserviceaccount.com"))
    script = command_of(result)["create"]
    assert substitutions_of(script)["_HF_SECRET"] == "projects/other/secrets/hf/versions/3", f"gemma-image-build: {script!r}"
    assert "--service-account=projects/mock-project/serviceAccounts/b@x.iam.gserviceaccount.com " in script, \
        f"gemma-image-build: {script!r}"


# ---------------------------------------------------------------------------
# Rebuild only when the inputs change.


def test_triggers_follow_the_dockerfile_content_and_nothing_else(tmp_path):
    build_dir = copy_build_dir(tmp_path)
    args = dataclasses.replace(TUTORIAL, source_dir=str(build_dir))
    first = command_of(run(args))
    again = command_of(run(args))
    assert again["triggers"] == first["triggers"] and again["create"] == first["create"], \
        "gemma-image-build: unchanged inputs changed the triggers or script (would rebuild)"

    (build_dir / "NOTES.md").write_text("not part of the build\n")
    unrelated = command_of(run(args))
    assert unrelated["triggers"] == first["triggers"], "gemma-image-build: an unrelated file changed the triggers"

    dockerfile = build_dir / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "\n# a change\n")
    changed = command_of(run(args))
    assert changed["triggers"] != first["triggers"], "gemma-image-build: a Dockerfile change did not change the triggers"
    assert substitutions_of(changed["create"])["_IMAGE"] != substitutions_of(first["create"])["_IMAGE"], \
        "gemma-image-build: a Dockerfile change kept the image tag"


def test_same_inputs_from_another_checkout_do_not_rebuild(tmp_path):
    shipped = command_of(run(TUTORIAL))
    elsewhere = command_of(run(dataclasses.replace(TUTORIAL, source_dir=str(copy_build_dir(tmp_path)))))
    assert elsewhere["triggers"] == shipped["triggers"] and elsewhere["create"] == shipped["create"], \
        "gemma-image-build: the same files in another directory changed the build inputs"


@pytest.mark.parametrize("change", [
    dict(model_id="google/gemma-3-4b-it"),
    dict(model_revision="fedcba9876543210fedcba9876543210fedcba98"),
    dict(base_image=BASE.replace("v0.32.0", "v0.31.0")),
])
def test_triggers_change_with_model_revision_and_base_image(change):
    before = command_of(run(TUTORIAL))["triggers"]
    after = command_of(run(dataclasses.replace(TUTORIAL, **change)))["triggers"]
    assert after != before, f"gemma-image-build: {change} did not change the triggers"


# ---------------------------------------------------------------------------
# The token.

CANARY = "hf_CanaryCanaryCanaryCanary0123456789"


def test_hf_token_never_reaches_the_command():
    def program() -> None:
        token = pulumi.Config("llm-serving").require_secret("hfToken")
        secret = gcp.secretmanager.Secret("hf-token", secret_id="llm-dev-hf-token", replication={"auto": {}})
        gcp.secretmanager.SecretVersion("hf-token-v", secret=secret.id, secret_data=token)
        build = ModelImageBuild("gemma-image", dataclasses.replace(TUTORIAL, hf_token=secret.secret_id))
        pulumi.export("image_by_digest", build.image_by_digest)

    result = run_under_mocks(program, config={"llm-serving:hfToken": CANARY}, secret_keys=["llm-serving:hfToken"])
    assert result.named("hf-token-v").inputs, "hf-token-v: not registered, the canary never entered the program"
    for reg in result.registrations:
        assert CANARY not in json.dumps(mask_secrets(reg.inputs), default=str), f"{reg.name}: the token is in its inputs"
    cmd = command_of(result)
    assert not cmd.get("environment"), f"gemma-image-build: unexpected environment {cmd.get('environment')}"
    assert "HF_TOKEN" not in json.dumps(cmd, default=str), "gemma-image-build: HF_TOKEN appears in the Command"
    assert CANARY not in json.dumps(result.outputs["image_by_digest"].value), "stack output image_by_digest: holds the token"


# ---------------------------------------------------------------------------
# Bad values.


@pytest.mark.parametrize("change, field, hint", [
    (dict(base_image="vllm/vllm-openai:latest"), "base_image", "latest"),
    (dict(base_image="vllm/vllm-openai"), "base_image", "without a tag"),
    (dict(model_id="gemma-3-1b-it"), "model_id", "org/name"),
    (dict(hf_token="hf_abc def"), "hf_token", "never the token"),
    (dict(hf_token_version="newest"), "hf_token_version", "latest"),
    (dict(image_name="Vllm Gemma"), "image_name", "lowercase"),
    (dict(machine_type="n2-standard-8"), "machine_type", "e2-highcpu-8"),
    (dict(source_dir="/nonexistent"), "source_dir", "Dockerfile"),
    (dict(timeout_seconds=60), "timeout_seconds", "600"),
])
def test_bad_values_are_rejected_with_the_field_and_the_fix(change, field, hint):
    with pytest.raises(ValueError) as info:
        run(dataclasses.replace(TUTORIAL, **change))
    message = str(info.value)
    assert "'gemma-image'" in message, f"gemma-image {change}: error does not name the resource: {message}"
    assert f"{field}:" in message and hint in message, f"gemma-image {change}: expected {field!r}, {hint!r} in: {message}"


# ---------------------------------------------------------------------------
# The shipped build files.


def test_dockerfile_mounts_the_token_as_a_buildkit_secret_and_serves_offline():
    text = (SHIPPED / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    where = "images/vllm-baked/Dockerfile"
    assert "ARG BASE_IMAGE" in lines and "FROM ${BASE_IMAGE}" in lines, f"{where}: base image not taken from the build"
    assert any(line.startswith("RUN --mount=type=secret,id=hf_token") for line in lines), f"{where}: no secret mount"
    assert "ENV HF_HOME=/model-cache" in lines and "ENV HF_HUB_OFFLINE=1" in lines, f"{where}: cache/offline env missing"
    assert not any(re.match(r"(ARG|ENV)\s+HF_TOKEN", line) for line in lines), f"{where}: the token is an ARG/ENV"
    assert not any(line.startswith(("ENTRYPOINT", "CMD")) for line in lines), f"{where}: overrides the entrypoint"
    assert not any("login" in line for line in lines), f"{where}: logs in to the hub (stores the token under HF_HOME)"
    assert not any(":latest" in line for line in lines), f"{where}: uses :latest"


def test_cloudbuild_reads_the_token_from_secret_manager_and_uses_what_the_component_passes():
    config = yaml.safe_load((SHIPPED / "cloudbuild.yaml").read_text())
    where = "images/vllm-baked/cloudbuild.yaml"
    [step] = config["steps"]
    script = " ".join(step["args"])
    assert step["secretEnv"] == ["HF_TOKEN"], f"{where}: secretEnv {step.get('secretEnv')}"
    assert "docker buildx build" in script and "--secret id=hf_token,env=HF_TOKEN" in script, f"{where}: {script!r}"
    assert not re.search(r"--build-arg\s+\S*TOKEN", script), f"{where}: the token is a build-arg"
    assert config["availableSecrets"]["secretManager"] == [{"versionName": "${_HF_SECRET}", "env": "HF_TOKEN"}], \
        f"{where}: availableSecrets {config.get('availableSecrets')}"
    assert config["images"] == ["${_IMAGE}"], f"{where}: images {config.get('images')}"
    assert config["options"]["logging"] == "CLOUD_LOGGING_ONLY", f"{where}: options {config.get('options')}"
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", (SHIPPED / "cloudbuild.yaml").read_text()))
    passed = set(substitutions_of(command_of(run(TUTORIAL))["create"]))
    assert used == passed, f"{where}: uses {sorted(used)} but the component passes {sorted(passed)}"
