"""Config errors: one test per message family, each proving the error names the stack file, the
key path (as `pulumi config set --path` takes it), the bad value and the fix; every problem is
reported in one error; and the offline plan's CLI prints them to stderr with exit status 2."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from offline import plan as plan_module
from stacks.config import load
from stacks.schema import ConfigError

SOURCE = "Pulumi.errors-test.yaml"
NS = "llm-serving:"
DEP = f"{NS}deployments.llama-8b"

# A valid minimal stack: one Vertex AI deployment of a catalog model.
BASE: dict[str, Any] = {
    "gcp:project": "acme-llm-dev",
    "gcp:region": "us-central1",
    f"{NS}environment": "dev",
    f"{NS}deployments": {
        "llama-8b": {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct"},
    },
}


def stack(**overrides: Any) -> dict[str, Any]:
    """BASE with top-level keys replaced (value None removes the key)."""
    values = copy.deepcopy(BASE)
    for key, value in overrides.items():
        full = key if ":" in key else NS + key
        if value is None:
            values.pop(full, None)
        else:
            values[full] = value
    return values


def with_deployment(name: str = "llama-8b", **fields: Any) -> dict[str, Any]:
    values = copy.deepcopy(BASE)
    values[f"{NS}deployments"][name] = {**values[f"{NS}deployments"].get(name, {}), **fields}
    return values


def config_error(values: dict[str, Any], secret_keys: frozenset[str] = frozenset()) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(values, set(secret_keys), source=SOURCE, stack="errors-test")
    return info.value


def problem_line(error: ConfigError, path: str) -> str:
    """The one rendered line for ``path``; the whole error must name the stack file."""
    text = str(error)
    assert text.startswith(f"{SOURCE}: "), f"the error does not start with the stack file name:\n{text}"
    lines = [line for line in text.splitlines() if line.startswith(f"  - {path}: ")]
    assert len(lines) == 1, f"expected exactly one problem at {path!r}, got {len(lines)}:\n{text}"
    return lines[0]


def assert_problem(values: dict[str, Any], path: str, *fragments: str,
                   secret_keys: frozenset[str] = frozenset()) -> str:
    error = config_error(values, secret_keys)
    line = problem_line(error, path)
    for fragment in fragments:
        assert fragment in line, f"{path}: expected {fragment!r} in the message, got:\n{line}"
    return line


def test_base_config_is_valid():
    """The control every other test mutates: it must load, or the other tests prove nothing."""
    stack_config = load(BASE, set(), source=SOURCE, stack="errors-test")
    assert list(stack_config.deployments) == ["llama-8b"]


# ---------------------------------------------------------------------------
# Unknown keys (typos) with a "did you mean".


def test_unknown_top_level_key_suggests_the_close_key():
    values = stack()
    values[f"{NS}deploymnets"] = values.pop(f"{NS}deployments")
    error = config_error(values)
    line = problem_line(error, f"{NS}deploymnets")
    assert "unknown key" in line and "did you mean 'deployments'?" in line, line
    assert "known keys:" in line and "environment" in line, line


def test_unknown_nested_key_suggests_the_close_key():
    values = with_deployment(vllm={"maxModelLenn": 4096})
    line = assert_problem(values, f"{DEP}.vllm.maxModelLenn", "unknown key", "did you mean 'maxModelLen'?")
    assert "gpuMemoryUtilization" in line, "the message should list the section's known keys"


def test_unknown_key_inside_a_deployment_suggests_the_close_key():
    values = with_deployment(scailng={"maxReplicas": 2})
    assert_problem(values, f"{DEP}.scailng", "unknown key", "did you mean 'scaling'?")


def test_key_outside_the_project_namespace_is_rejected():
    values = stack(**{"llm-servng:labels": {"team": "ml"}})
    assert_problem(values, "llm-servng:labels", "unknown key", "`llm-serving:` namespace")


# ---------------------------------------------------------------------------
# Wrong types, with what is allowed.


def test_wrong_type_int_names_value_and_range():
    values = with_deployment(vllm={"maxModelLen": "long"})
    assert_problem(values, f"{DEP}.vllm.maxModelLen", "got 'long'", "expected a whole number", "at least 16")


def test_wrong_type_int_rejects_a_fraction():
    values = with_deployment(scaling={"maxReplicas": 2.5})
    assert_problem(values, f"{DEP}.scaling.maxReplicas", "got 2.5", "whole number from 1 to 1000")


def test_wrong_type_bool():
    values = stack(checkQuota="yes")
    assert_problem(values, f"{NS}checkQuota", "got 'yes'", "expected true or false")


def test_wrong_type_float():
    values = with_deployment(vllm={"gpuMemoryUtilization": "most"})
    assert_problem(values, f"{DEP}.vllm.gpuMemoryUtilization", "got 'most'", "expected a number from 0.1 to 0.99")


def test_wrong_enum_lists_allowed_values_and_suggests():
    values = with_deployment(platform="cloud-run")
    assert_problem(values, f"{DEP}.platform", "got 'cloud-run'", "allowed: vertex, cloudrun, gke",
                   "did you mean 'cloudrun'?")


def test_wrong_environment_lists_allowed_values():
    values = stack(environment="production")
    assert_problem(values, f"{NS}environment", "got 'production'", "allowed: dev, staging, prod")


def test_wrong_type_map_where_a_list_is_expected():
    values = with_deployment(vllm={"extraArgs": "--enable-chunked-prefill"})
    assert_problem(values, f"{DEP}.vllm.extraArgs", "got '--enable-chunked-prefill'", "expected a list")


# ---------------------------------------------------------------------------
# Out-of-range numbers.


def test_number_above_maximum():
    values = with_deployment(vllm={"gpuMemoryUtilization": 1.5})
    assert_problem(values, f"{DEP}.vllm.gpuMemoryUtilization", "got 1.5", "from 0.1 to 0.99")


def test_number_below_minimum():
    values = stack(bucket={"softDeleteDays": -1})
    assert_problem(values, f"{NS}bucket.softDeleteDays", "got -1", "from 0 to 90")


# ---------------------------------------------------------------------------
# Required keys.


@pytest.mark.parametrize(
    ("key", "fix"),
    [
        ("gcp:project", "pulumi config set gcp:project"),
        ("gcp:region", "pulumi config set gcp:region"),
    ],
)
def test_required_provider_key_missing(key: str, fix: str):
    assert_problem(stack(**{key: None}), key, "is required", fix)


def test_required_environment_missing():
    assert_problem(stack(environment=None), f"{NS}environment", "is required")


def test_malformed_project_id():
    values = stack(**{"gcp:project": "Acme_LLM"})
    assert_problem(values, "gcp:project", "got 'Acme_LLM'", "6-30 lowercase letters")


@pytest.mark.parametrize("field", ["platform", "model"])
def test_required_deployment_field_missing(field: str):
    values = copy.deepcopy(BASE)
    del values[f"{NS}deployments"]["llama-8b"][field]
    assert_problem(values, f"{DEP}.{field}", "is required")


def test_model_id_must_look_like_a_hugging_face_id():
    values = with_deployment(model="llama-8b")
    assert_problem(values, f"{DEP}.model", "got 'llama-8b'", "org/name")


@pytest.mark.parametrize("source, fix", [
    ("gs://other-bucket/loras/x", "adapters in other buckets are not readable"),
    ("hf://just-a-name", "write hf://<org>/<repo>"),
])
def test_lora_adapter_must_be_a_bucket_prefix_or_a_hub_repository(source: str, fix: str):
    values = with_deployment(lora={"adapters": {"support": source}})
    assert_problem(values, f"{DEP}.lora.adapters.support", repr(source), fix)


def test_existing_endpoint_must_be_an_endpoint_name_or_id():
    values = with_deployment(vertex={"existingEndpoint": "my-endpoint"})
    assert_problem(values, f"{DEP}.vertex.existingEndpoint", "'my-endpoint'", "projects/<project>/locations/<region>/endpoints")


# ---------------------------------------------------------------------------
# Names.


def test_bad_deployment_name():
    values = stack(deployments={"Llama_8B": {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct"}})
    assert_problem(values, f"{NS}deployments.Llama_8B", "'Llama_8B' is not allowed",
                   "lowercase letters, digits and hyphens")


def test_service_account_id_too_long():
    # 20 characters is the longest allowed deployment name; with `llm-staging-` the Cloud Run
    # deployment's service account id is 32.
    name = "abcdefghij-klmnopqrs"
    values = stack(environment="staging", deployments={name: {"platform": "cloudrun", "model": "google/gemma-3-1b-it"}})
    assert_problem(values, f"{NS}deployments.{name}", f"'llm-staging-{name}'", "32 characters",
                   "6-30 characters", "Change the deployment name or llm-serving:namePrefix")


# ---------------------------------------------------------------------------
# Secrets and protections.


def test_plaintext_hf_token_is_rejected_without_echoing_it():
    token = "hf_plaintextCanary0123456789"
    values = stack(hfToken=token)
    error = config_error(values)
    line = problem_line(error, f"{NS}hfToken")
    assert "plaintext" in line and "pulumi config set --secret llm-serving:hfToken" in line, line
    assert token not in str(error), "the error message echoes the token it complains about"


def test_secret_hf_token_is_accepted():
    values = stack(hfToken="hf_secretValue")
    config = load(values, {f"{NS}hfToken"}, source=SOURCE, stack="errors-test")
    assert config.hf_token_set and config.has_hf_token


def test_force_destroy_in_prod():
    values = stack(environment="prod", bucket={"forceDestroy": True})
    assert_problem(values, f"{NS}bucket.forceDestroy", "is true in a prod stack", "Set it to false")


def test_force_destroy_in_staging():
    values = stack(environment="staging", bucket={"forceDestroy": True})
    assert_problem(values, f"{NS}bucket.forceDestroy", "is true in a staging stack", "only dev")


def test_force_destroy_allowed_in_dev():
    config = load(stack(bucket={"forceDestroy": True}), set(), source=SOURCE, stack="errors-test")
    assert config.settings.bucket.force_destroy is True


def cloudrun_deployment(**cloudrun: Any) -> dict[str, Any]:
    return {"platform": "cloudrun", "model": "google/gemma-3-1b-it", "cloudrun": cloudrun}


def test_public_invoker_without_allow_public_invokers():
    values = stack(deployments={"gemma": cloudrun_deployment(invokers=["allUsers"])})
    assert_problem(values, f"{NS}deployments.gemma.cloudrun.invokers", "'allUsers'", "public",
                   "llm-serving:access.allowPublicInvokers: true")


def test_public_invoker_allowed_when_the_stack_says_so():
    values = stack(deployments={"gemma": cloudrun_deployment(invokers=["allAuthenticatedUsers"])},
                   access={"allowPublicInvokers": True})
    config = load(values, set(), source=SOURCE, stack="errors-test")
    assert config.deployments["gemma"].cloudrun_options.invokers == ("allAuthenticatedUsers",)


def test_malformed_invoker_member():
    values = stack(deployments={"gemma": cloudrun_deployment(invokers=["ml-team@example.com"])})
    assert_problem(values, f"{NS}deployments.gemma.cloudrun.invokers", "'ml-team@example.com'",
                   "user:a@example.com")


# ---------------------------------------------------------------------------
# Platform-specific sections.


def test_platform_options_under_the_wrong_platform():
    values = with_deployment(cloudrun={"weights": "hub"})
    assert_problem(values, f"{DEP}.cloudrun", "applies to platform cloudrun",
                   "this deployment has platform vertex", "move the options under `vertex:`")


def test_gke_deployment_without_a_gke_section():
    values = stack(deployments={"llama-70b": {"platform": "gke", "model": "meta-llama/Llama-3.1-70B"}})
    assert_problem(values, f"{NS}deployments.llama-70b.platform", "is gke",
                   "no `llm-serving:gke` cluster section", "add one with a location and a node pool")


GKE = {"location": "europe-west4-a",
       "nodePools": {"tpu-v6e": {"machineType": "ct6e-standard-8t", "tpuTopology": "2x4"}}}


def test_unknown_node_pool_suggests_the_close_name():
    values = stack(gke=GKE, deployments={"llama-70b": {"platform": "gke", "model": "meta-llama/Llama-3.1-70B",
                                                       "hardware": {"nodePool": "tpu-v6"}}})
    assert_problem(values, f"{NS}deployments.llama-70b.hardware.nodePool", "got 'tpu-v6'",
                   "defined node pools: tpu-v6e", "did you mean 'tpu-v6e'?")


def test_node_pool_required_when_the_cluster_has_several():
    pools = {**GKE["nodePools"], "l4": {"machineType": "g2-standard-24"}}
    values = stack(gke={**GKE, "nodePools": pools},
                   deployments={"llama-70b": {"platform": "gke", "model": "meta-llama/Llama-3.1-70B"}})
    assert_problem(values, f"{NS}deployments.llama-70b.hardware.nodePool", "is required",
                   "choose one of: tpu-v6e, l4")


# ---------------------------------------------------------------------------
# Images.


@pytest.mark.parametrize(
    ("image", "fragments"),
    [
        ("vllm/vllm-openai:latest", ("`latest` moves under you", "pin a release tag or a digest")),
        ("vllm/vllm-openai", ("without a tag", "pin a release tag (e.g. :v0.32.0) or a digest")),
        ("localhost:5000/vllm-openai", ("without a tag",)),  # a registry port is not a tag
        ("vllm/vllm-openai@sha256:abc123", ("a digest must be sha256: followed by 64 hex digits",)),
    ],
)
def test_unpinned_or_malformed_image(image: str, fragments: tuple[str, ...]):
    values = with_deployment(image=image)
    assert_problem(values, f"{DEP}.image", f"got {image!r}", *fragments)


def test_pinned_images_are_accepted():
    for image in ("vllm/vllm-openai:v0.11.0", "vllm/vllm-openai@sha256:" + "a" * 64):
        load(with_deployment(image=image), set(), source=SOURCE, stack="errors-test")


# ---------------------------------------------------------------------------
# Cross-field rules.


def test_min_replicas_above_max_replicas():
    values = with_deployment(scaling={"minReplicas": 3, "maxReplicas": 2})
    assert_problem(values, f"{DEP}.scaling.minReplicas", "got 3, above maxReplicas 2", "raise maxReplicas")


def test_min_nodes_above_max_nodes():
    pools = {"tpu-v6e": {**GKE["nodePools"]["tpu-v6e"], "minNodes": 3, "maxNodes": 2}}
    values = stack(gke={**GKE, "nodePools": pools})
    assert_problem(values, f"{NS}gke.nodePools.tpu-v6e.minNodes", "got 3, above maxNodes 2", "raise maxNodes")


def test_max_cpu_loras_below_max_loras():
    values = with_deployment(lora={"adapters": {"support": "loras/support"}, "maxLoras": 4, "maxCpuLoras": 2})
    assert_problem(values, f"{DEP}.lora.maxCpuLoras", "got 2, below maxLoras 4", "maxCpuLoras >= maxLoras")


def test_extra_args_must_start_with_dashes():
    values = with_deployment(vllm={"extraArgs": ["--enable-chunked-prefill", "max-num-seqs=8"]})
    assert_problem(values, f"{DEP}.vllm.extraArgs[1]", "got 'max-num-seqs=8'", "--flag or --flag=value")


def test_lora_adapters_on_cloud_run():
    values = stack(deployments={"gemma": {**cloudrun_deployment(), "lora": {"adapters": {"a": "loras/a"}}}})
    assert_problem(values, f"{NS}deployments.gemma.lora.adapters", "supported on vertex and gke")


# ---------------------------------------------------------------------------
# Everything at once.


def test_several_problems_are_reported_together():
    values = stack(
        **{"gcp:project": None},
        environment="prod",
        bucket={"forceDestroy": True},
        deployments={
            "llama-8b": {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct",
                         "scailng": {"maxReplicas": 2}},
            "gemma": {"platform": "cloudrun", "model": "google/gemma-3-1b-it",
                      "vllm": {"maxModelLen": "long"}},
        },
    )
    values[f"{NS}labls"] = {"team": "ml"}
    error = config_error(values)
    expected = [
        "gcp:project",
        f"{NS}labls",
        f"{NS}bucket.forceDestroy",
        f"{NS}deployments.llama-8b.scailng",
        f"{NS}deployments.gemma.vllm.maxModelLen",
    ]
    for path in expected:
        problem_line(error, path)
    assert len(error.problems) == len(expected), str(error)
    assert str(error).splitlines()[0] == f"{SOURCE}: {len(expected)} config problems:"


def test_stack_rules_still_run_when_a_top_level_value_is_bad():
    values = stack(environment="prod", checkQuota="yes", bucket={"forceDestroy": True})
    error = config_error(values)
    problem_line(error, f"{NS}checkQuota")
    problem_line(error, f"{NS}bucket.forceDestroy")


def test_deployment_rules_still_run_when_a_field_is_bad():
    values = with_deployment(image="vllm/vllm-openai:latest", vllm={"maxModelLen": "long"})
    error = config_error(values)
    problem_line(error, f"{DEP}.vllm.maxModelLen")
    problem_line(error, f"{DEP}.image")


def test_stack_rules_still_run_for_a_deployment_with_a_bad_field():
    name = "abcdefghij-klmnopqrs"
    values = stack(environment="staging", deployments={name: {
        "platform": "cloudrun", "model": "google/gemma-3-1b-it", "vllm": {"maxModelLen": "long"}}})
    error = config_error(values)
    problem_line(error, f"{NS}deployments.{name}.vllm.maxModelLen")
    problem_line(error, f"{NS}deployments.{name}")


# ---------------------------------------------------------------------------
# Through the offline plan's command line.


def write_stack_file(tmp_path, values: dict[str, Any], name: str = "Pulumi.broken.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"config": values}, sort_keys=False), encoding="utf-8")
    return path


def test_cli_reports_every_problem_on_stderr_with_status_2(tmp_path, capsys):
    values = stack(environment="prod", bucket={"forceDestroy": True},
                   deployments={"llama-8b": {"platform": "vertx", "model": "meta-llama/Llama-3.1-8B-Instruct"}})
    path = write_stack_file(tmp_path, values)
    status = plan_module.main(["--file", str(path), "--out", str(tmp_path / "build")])
    captured = capsys.readouterr()
    assert status == 2, f"exit status {status}; stderr:\n{captured.err}"
    assert captured.out == "", f"an invalid stack printed a plan:\n{captured.out}"
    assert captured.err.startswith("Pulumi.broken.yaml: 2 config problems:"), captured.err
    assert f"{NS}bucket.forceDestroy: is true in a prod stack" in captured.err
    assert re.search(rf"{re.escape(DEP)}\.platform: got 'vertx'; allowed: vertex, cloudrun, gke "
                     r"\(did you mean 'vertex'\?\)", captured.err), captured.err
    assert not (tmp_path / "build").exists(), "an invalid stack wrote manifests"


def test_cli_does_not_echo_a_plaintext_token(tmp_path, capsys):
    token = "hf_cliCanaryToken0123456789"
    path = write_stack_file(tmp_path, stack(hfToken=token))
    status = plan_module.main(["--file", str(path), "--out", str(tmp_path / "build")])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert f"{NS}hfToken: is stored in plaintext" in captured.err
    assert token not in captured.err


def test_cli_missing_stack_file_is_status_2(tmp_path, capsys):
    status = plan_module.main(["--file", str(tmp_path / "Pulumi.nothere.yaml")])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert "no such stack file" in captured.err
