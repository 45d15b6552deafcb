"""VertexVllmEndpoint under the mock engine: the tutorial's models on the tutorial's hardware, the
container contract, secrets, validation and the LoRA grant."""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pytest

from components.container import ServingContainer
from components.vertex import (
    ADOPTED_TYPE_TOKEN,
    DUTY_CYCLE_METRIC,
    TYPE_TOKEN,
    AdoptedVertexEndpoint,
    AdoptedVertexEndpointArgs,
    VertexVllmEndpoint,
    VertexVllmEndpointArgs,
    client_output_keys,
)
from offline.mocks import MOCK_PROJECT_NUMBER, is_wrapped_secret, unwrap_secrets
from offline.runner import RunResult, run_under_mocks

VERTEX = "gcp:vertex/aiEndpointWithModelGardenDeployment:AiEndpointWithModelGardenDeployment"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
IMAGE = "us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:20250710_0916_RC01"
SERVING_SA = "vllm-serving@mock-project.iam.gserviceaccount.com"

# Machine type -> (Vertex accelerator, count): what the accelerator catalog hands the component.
MACHINES: dict[str, tuple[str, int]] = {
    **{f"g2-standard-{n}": ("NVIDIA_L4", 1) for n in (4, 8, 12, 16, 32)},
    "g2-standard-24": ("NVIDIA_L4", 2), "g2-standard-48": ("NVIDIA_L4", 4), "g2-standard-96": ("NVIDIA_L4", 8),
    **{f"a2-highgpu-{n}g": ("NVIDIA_TESLA_A100", n) for n in (1, 2, 4, 8)},
    **{f"a2-ultragpu-{n}g": ("NVIDIA_A100_80GB", n) for n in (1, 2, 4, 8)},
    "a3-highgpu-8g": ("NVIDIA_H100_80GB", 8),
    "a3-megagpu-8g": ("NVIDIA_H100_MEGA_80GB", 8),
    "a3-ultragpu-8g": ("NVIDIA_H200_141GB", 8),
}

# The tutorial's recommended hardware, per model it lists (Llama 3.1 text, Llama 3.2 text and vision).
TUTORIAL_MODELS = [
    ("meta-llama/Meta-Llama-3.1-8B", "g2-standard-12", "NVIDIA_L4", 1),
    ("meta-llama/Meta-Llama-3.1-8B-Instruct", "g2-standard-12", "NVIDIA_L4", 1),
    ("meta-llama/Meta-Llama-3.1-70B", "g2-standard-96", "NVIDIA_L4", 8),
    ("meta-llama/Meta-Llama-3.1-70B-Instruct", "g2-standard-96", "NVIDIA_L4", 8),
    ("meta-llama/Meta-Llama-3.1-405B-FP8", "a3-highgpu-8g", "NVIDIA_H100_80GB", 8),
    ("meta-llama/Meta-Llama-3.1-405B-Instruct-FP8", "a3-highgpu-8g", "NVIDIA_H100_80GB", 8),
    ("meta-llama/Llama-3.2-1B", "g2-standard-8", "NVIDIA_L4", 1),
    ("meta-llama/Llama-3.2-1B-Instruct", "g2-standard-8", "NVIDIA_L4", 1),
    ("meta-llama/Llama-3.2-3B", "g2-standard-8", "NVIDIA_L4", 1),
    ("meta-llama/Llama-3.2-3B-Instruct", "g2-standard-8", "NVIDIA_L4", 1),
    ("meta-llama/Llama-3.2-11B-Vision", "a2-highgpu-1g", "NVIDIA_TESLA_A100", 1),
    ("meta-llama/Llama-3.2-11B-Vision-Instruct", "a2-highgpu-1g", "NVIDIA_TESLA_A100", 1),
    ("meta-llama/Llama-3.2-90B-Vision", "a3-highgpu-8g", "NVIDIA_H100_80GB", 8),
    ("meta-llama/Llama-3.2-90B-Vision-Instruct", "a3-highgpu-8g", "NVIDIA_H100_80GB", 8),
]


CONTAINER_FIELDS = {f.name for f in dataclasses.fields(ServingContainer)}


def make_args(model: str = "meta-llama/Meta-Llama-3.1-8B-Instruct", machine: str = "g2-standard-12",
              accelerator: str = "NVIDIA_L4", count: int = 1, **overrides: Any) -> VertexVllmEndpointArgs:
    """The tutorial's Args; overrides naming a ServingContainer field change the container."""
    vision = "Vision" in model
    container = ServingContainer(
        image=IMAGE,
        command=("python", "-m", "vllm.entrypoints.api_server"),
        args=("--host=0.0.0.0", "--port=8080", f"--model={model}", f"--tensor-parallel-size={count}",
              "--gpu-memory-utilization=0.9", "--max-model-len=4096", f"--max-num-seqs={12 if vision else 256}"),
        env={"MODEL_ID": model, "DEPLOY_SOURCE": "pulumi"},
        port=8080,
        health_path="/ping",
        predict_route="/generate",
        served_model_name=model,
    )
    container = dataclasses.replace(container, **{k: v for k, v in overrides.items() if k in CONTAINER_FIELDS})
    overrides = {k: v for k, v in overrides.items() if k not in CONTAINER_FIELDS}
    values: dict[str, Any] = dict(
        region="us-central1",
        hugging_face_model_id=model,
        container=container,
        machine_type=machine,
        accelerator_type=accelerator,
        accelerator_count=count,
        machine_accelerators=MACHINES,
        service_account_email=SERVING_SA,
        hugging_face_cache_enabled=False,
        shared_memory_size_mb=16 * 1024,
        deployment_timeout_seconds=7200,
        min_replicas=1,
        max_replicas=1,
        duty_cycle_target=60,
        spot=False,
        dedicated_endpoint=True,
    )
    values.update(overrides)
    return VertexVllmEndpointArgs(**values)


def deploy(args: VertexVllmEndpointArgs, name: str = "llm") -> RunResult:
    def program() -> None:
        endpoint = VertexVllmEndpoint(name, args)
        pulumi.export("deployment", endpoint.client_outputs())

    return run_under_mocks(program)


def the_deployment(run: RunResult, name: str = "llm"):
    found = run.of_type(VERTEX)
    assert len(found) == 1, f"{name}: expected one {VERTEX}, registered {[r.name for r in run.registrations]}"
    return found[0]


def expect(resource: str, path: str, got: Any, want: Any) -> None:
    assert got == want, f"{resource}: {path} is {got!r}, expected {want!r}"


@pytest.mark.parametrize("model,machine,accelerator,count", TUTORIAL_MODELS, ids=[m[0].split("/")[1] for m in TUTORIAL_MODELS])
def test_tutorial_models_on_tutorial_hardware(model: str, machine: str, accelerator: str, count: int) -> None:
    run = deploy(make_args(model, machine, accelerator, count))
    reg = the_deployment(run)
    inputs = unwrap_secrets(reg.inputs)
    where = f"{reg.name} ({model})"

    expect(where, "huggingFaceModelId", inputs.get("huggingFaceModelId"), model)
    expect(where, "location", inputs.get("location"), "us-central1")
    resources = inputs["deployConfig"]["dedicatedResources"]
    expect(where, "machineSpec", resources["machineSpec"],
           {"machineType": machine, "acceleratorType": accelerator, "acceleratorCount": count})
    expect(where, "minReplicaCount", resources["minReplicaCount"], 1)
    expect(where, "autoscalingMetricSpecs", resources["autoscalingMetricSpecs"],
           [{"metricName": DUTY_CYCLE_METRIC, "target": 60}])
    expect(where, "spot", resources["spot"], False)

    spec = inputs["modelConfig"]["containerSpec"]
    expect(where, "containerSpec.imageUri", spec["imageUri"], IMAGE)
    expect(where, "containerSpec.commands", spec["commands"], ["python", "-m", "vllm.entrypoints.api_server"])
    assert f"--model={model}" in spec["args"], f"{where}: containerSpec.args {spec['args']} lack --model={model}"
    expect(where, "containerSpec.predictRoute", spec["predictRoute"], "/generate")
    expect(where, "containerSpec.healthRoute", spec["healthRoute"], "/ping")
    expect(where, "containerSpec.ports", spec["ports"], [{"containerPort": 8080}])
    expect(where, "containerSpec.sharedMemorySizeMb", spec["sharedMemorySizeMb"], "16384")
    expect(where, "containerSpec.deploymentTimeout", spec["deploymentTimeout"], "7200s")
    env = {item["name"]: item["value"] for item in spec["envs"]}
    expect(where, "containerSpec.envs names", sorted(env), ["DEPLOY_SOURCE", "MODEL_ID"])
    expect(where, "containerSpec.envs MODEL_ID", env["MODEL_ID"], model)
    assert not [n for n in env if "TOKEN" in n.upper()], f"{where}: container env {sorted(env)} holds a token variable"
    assert "huggingFaceAccessToken" not in inputs["modelConfig"], f"{where}: a token was sent though none was given"
    expect(where, "endpointConfig.dedicatedEndpointEnabled", inputs["endpointConfig"]["dedicatedEndpointEnabled"], True)
    assert not run.of_type(BUCKET_MEMBER), f"{where}: a bucket grant was created without LoRA adapters"


def test_dedicated_endpoint_urls() -> None:
    run = deploy(make_args())
    out = run.outputs["deployment"].value
    endpoint_id = out["endpoint_id"]
    name = f"projects/{MOCK_PROJECT_NUMBER}/locations/us-central1/endpoints/{endpoint_id}"
    host = f"https://{endpoint_id}.us-central1-{MOCK_PROJECT_NUMBER}.prediction.vertexai.goog"
    expect("llm outputs", "endpoint_name", out["endpoint_name"], name)
    expect("llm outputs", "predict_url", out["predict_url"], f"{host}/v1/{name}:predict")
    expect("llm outputs", "openai_base_url", out["openai_base_url"], f"{host}/v1beta1/{name}")
    expect("llm outputs", "region", out["region"], "us-central1")
    expect("llm outputs", "dedicated", out["dedicated"], True)
    expect("llm outputs", "platform", out["platform"], "vertex")
    assert out["deployed_model_id"], "llm outputs: deployed_model_id is empty"


def test_shared_endpoint_urls_and_logs_link() -> None:
    run = deploy(make_args(dedicated_endpoint=False))
    reg = the_deployment(run)
    expect(reg.name, "endpointConfig.dedicatedEndpointEnabled", reg.inputs["endpointConfig"]["dedicatedEndpointEnabled"], False)
    out = run.outputs["deployment"].value
    name = out["endpoint_name"]
    expect("llm outputs", "predict_url", out["predict_url"], f"https://us-central1-aiplatform.googleapis.com/v1/{name}:predict")
    expect("llm outputs", "openai_base_url", out["openai_base_url"], f"https://us-central1-aiplatform.googleapis.com/v1beta1/{name}")
    logs = urllib.parse.urlsplit(out["logs_url"])
    query = urllib.parse.unquote(logs.path.split(";query=", 1)[1])
    expect("llm outputs", "logs_url host", logs.netloc, "console.cloud.google.com")
    expect("llm outputs", "logs_url query", query.splitlines(),
           ['resource.type="aiplatform.googleapis.com/Endpoint"', f'resource.labels.endpoint_id="{out["endpoint_id"]}"'])
    expect("llm outputs", "logs_url project", logs.query, "project=mock-project")


def test_endpoint_id_output_is_turned_into_a_full_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real provider returns only the endpoint id in `endpoint`; the mock returns the full name.
    import offline.mocks as mocks

    original = mocks.COMPUTED[VERTEX]
    monkeypatch.setitem(mocks.COMPUTED, VERTEX,
                        lambda *a: {**original(*a), "endpoint": original(*a)["endpoint"].rsplit("/", 1)[-1]})
    out = deploy(make_args()).outputs["deployment"].value
    expect("llm outputs", "endpoint_name", out["endpoint_name"],
           f"projects/{MOCK_PROJECT_NUMBER}/locations/us-central1/endpoints/{out['endpoint_id']}")
    assert "/" not in out["endpoint_id"], f"llm outputs: endpoint_id {out['endpoint_id']!r} is not a bare id"


def _plaintext_paths(value: Any, needle: str, path: str = "") -> list[str]:
    """Paths where ``needle`` occurs outside a wrapped secret."""
    if is_wrapped_secret(value):
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _plaintext_paths(v, needle, f"{path}.{k}")]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _plaintext_paths(v, needle, f"{path}[{i}]")]
    return [path or "."] if needle in str(value) else []


@pytest.mark.parametrize("as_secret", [True, False], ids=["pulumi-secret", "plain-string"])
def test_token_only_in_model_config_as_secret(as_secret: bool) -> None:
    canary = "hf_CANARY_5b1e0c9d7a"
    token = pulumi.Output.secret(canary) if as_secret else canary
    run = deploy(make_args(hf_token=token))
    reg = the_deployment(run)

    model_config = reg.inputs["modelConfig"]
    assert is_wrapped_secret(model_config["huggingFaceAccessToken"]), \
        f"{reg.name}: modelConfig.huggingFaceAccessToken is not sent as a secret"
    assert not is_wrapped_secret(model_config["containerSpec"]), \
        f"{reg.name}: the container spec is hidden as a secret; only the token should be"
    expect(reg.name, "modelConfig.huggingFaceAccessToken", unwrap_secrets(model_config)["huggingFaceAccessToken"], canary)
    env = unwrap_secrets(model_config)["containerSpec"]["envs"]
    assert canary not in json.dumps(env), f"{reg.name}: the token leaked into the container env {env}"
    for other in run.registrations:
        leaks = _plaintext_paths(dict(other.inputs), canary)
        assert not leaks, f"{other.type} {other.name}: token in plain text at {leaks}"
    for key, output in run.outputs.items():
        assert canary not in json.dumps(output.value, default=str), f"stack output {key} holds the token"


def _spy_options(monkeypatch: pytest.MonkeyPatch, args: VertexVllmEndpointArgs) -> tuple[pulumi.ResourceOptions, RunResult]:
    """The ResourceOptions the component hands the deployment, and the run (options as the engine saw them)."""
    seen: list[pulumi.ResourceOptions] = []
    real = gcp.vertex.AiEndpointWithModelGardenDeployment

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, resource_name: str, *rest: Any, **kwargs: Any) -> None:
            seen.append(kwargs["opts"])
            super().__init__(resource_name, *rest, **kwargs)

    monkeypatch.setattr(gcp.vertex, "AiEndpointWithModelGardenDeployment", Spy)
    run = deploy(args)
    assert len(seen) == 1, f"llm-deployment: expected one deployment, saw {len(seen)}"
    return seen[0], run


def test_replacement_is_left_to_the_provider_and_creates_first(monkeypatch: pytest.MonkeyPatch) -> None:
    opts, run = _spy_options(monkeypatch, make_args())
    reg = the_deployment(run)
    assert not opts.replace_on_changes, \
        f"{reg.name}: replace_on_changes {opts.replace_on_changes} would replace on replica changes the provider updates in place"
    assert not opts.delete_before_replace, f"{reg.name}: replacement deletes first by default (downtime)"
    assert "replaceOnChanges" not in reg.options and "deleteBeforeReplace" not in reg.options, \
        f"{reg.name}: the engine saw options {reg.options}"
    assert "modelConfig" in (opts.additional_secret_outputs or []), f"{reg.name}: modelConfig output not secret"
    replacement = run.outputs["deployment"].value["replacement"]
    assert "update in place" in replacement and "created and deployed first" in replacement, \
        f"{reg.name}: the replacement output says {replacement!r}"


def test_delete_first_is_an_explicit_option(monkeypatch: pytest.MonkeyPatch) -> None:
    opts, run = _spy_options(monkeypatch, make_args(delete_before_replace=True))
    reg = the_deployment(run)
    assert opts.delete_before_replace is True, f"{reg.name}: delete_before_replace=True was not passed on"
    assert reg.options.get("deleteBeforeReplace") is True, f"{reg.name}: the engine saw options {reg.options}"
    assert not opts.replace_on_changes, f"{reg.name}: replace_on_changes {opts.replace_on_changes}"
    assert "deleted first" in run.outputs["deployment"].value["replacement"], run.outputs["deployment"].value


def _change(before: VertexVllmEndpointArgs, after: VertexVllmEndpointArgs) -> tuple[str, list[str]]:
    """How the engine would carry the deployment from one set of Args to the other (offline.plan's reading)."""
    from offline.plan import planned_change

    old, new = the_deployment(deploy(before)), the_deployment(deploy(after))
    return planned_change(new.type, dict(new.options), unwrap_secrets(old.inputs), unwrap_secrets(new.inputs))


# Input classes: replicas and autoscaling update in place; container, model and machine replace.
IN_PLACE_CHANGES: dict[str, dict[str, Any]] = {
    "min replicas": {"min_replicas": 2, "max_replicas": 3},
    "max replicas": {"max_replicas": 4},
    "autoscaling target": {"duty_cycle_target": 80},
}
REPLACING_CHANGES: dict[str, dict[str, Any]] = {
    "image": {"image": IMAGE.replace("20250710_0916_RC01", "20250620_0916_RC01")},
    "container args": {"args": ("--host=0.0.0.0", "--port=8080", "--max-model-len=8192")},
    "container env": {"env": {"MODEL_ID": "meta-llama/Meta-Llama-3.1-8B-Instruct", "DEPLOY_SOURCE": "other"}},
    "model": {"model": "meta-llama/Llama-3.2-3B-Instruct", "machine": "g2-standard-8"},
    "machine": {"machine": "g2-standard-24", "count": 2},
    "spot": {"spot": True},
    "dedicated endpoint": {"dedicated_endpoint": False},
}


@pytest.mark.parametrize("change", IN_PLACE_CHANGES, ids=list(IN_PLACE_CHANGES))
def test_replica_and_autoscaling_changes_plan_in_place(change: str) -> None:
    kind, paths = _change(make_args(), make_args(**IN_PLACE_CHANGES[change]))
    assert paths, f"llm-deployment: changing {change} changed no input"
    assert kind == "update", f"llm-deployment: changing {change} ({paths}) plans a {kind}, expected an in-place update"
    assert all(p.startswith("deployConfig.dedicatedResources.") for p in paths), paths


@pytest.mark.parametrize("change", REPLACING_CHANGES, ids=list(REPLACING_CHANGES))
def test_container_model_and_machine_changes_plan_a_replacement(change: str) -> None:
    kind, paths = _change(make_args(), make_args(**REPLACING_CHANGES[change]))
    assert paths, f"llm-deployment: changing {change} changed no input"
    assert kind == "replace", f"llm-deployment: changing {change} ({paths}) plans a {kind}, expected a replacement"


def test_replica_change_with_a_forced_replacement_option_would_replace() -> None:
    """The reading is not blind to options: a replace_on_changes covering deployConfig turns it into a replacement."""
    from offline.plan import VERTEX_DEPLOYMENT, planned_change

    old, new = the_deployment(deploy(make_args())), the_deployment(deploy(make_args(max_replicas=4)))
    kind, _ = planned_change(VERTEX_DEPLOYMENT, {"replaceOnChanges": ["deployConfig"]},
                             unwrap_secrets(old.inputs), unwrap_secrets(new.inputs))
    assert kind == "replace", f"llm-deployment: replaceOnChanges=[deployConfig] planned a {kind}"


def _problems(**overrides: Any) -> str:
    args = make_args(**overrides)
    with pytest.raises(ValueError) as raised:
        deploy(args)
    return str(raised.value)


@pytest.mark.parametrize("machine,accelerator,count,fragment", [
    ("g2-standard-12", "NVIDIA_L4", 2, "accelerator_count 2 does not fit machine_type 'g2-standard-12'"),
    ("a2-highgpu-1g", "NVIDIA_L4", 1, "accelerator_type 'NVIDIA_L4' does not fit machine_type 'a2-highgpu-1g'"),
    ("a3-highgpu-8g", "NVIDIA_H100_80GB", 4, "accelerator_count 4 does not fit machine_type 'a3-highgpu-8g'"),
    ("g2-standard-96", "NVIDIA_TESLA_A100", 8, "which carries NVIDIA_L4"),
    ("n1-standard-8", "NVIDIA_L4", 1, "machine_type 'n1-standard-8' is not in machine_accelerators"),
])
def test_bad_machine_accelerator_combinations(machine: str, accelerator: str, count: int, fragment: str) -> None:
    message = _problems(machine=machine, accelerator=accelerator, count=count,
                        args=("--host=0.0.0.0", "--port=8080"))
    assert fragment in message, f"VertexVllmEndpoint llm: error for {machine}/{accelerator}x{count} was {message!r}"
    assert message.startswith("VertexVllmEndpoint llm:"), f"error does not name the component: {message!r}"


@pytest.mark.parametrize("name", ["HF_TOKEN", "hf_token", "HUGGING_FACE_HUB_TOKEN"])
def test_token_env_var_rejected(name: str) -> None:
    message = _problems(env={"MODEL_ID": "meta-llama/Meta-Llama-3.1-8B-Instruct", name: "hf_whatever"})
    assert f"container.env.{name} looks like a credential" in message, f"llm: error was {message!r}"
    assert "hf_token" in message, f"llm: error does not say where the token goes: {message!r}"
    assert "hf_whatever" not in message, "llm: the error message repeats the token value"


def test_env_keeps_the_container_order() -> None:
    """Reordering the environment would replace the endpoint, so it goes out exactly as given."""
    env = {"MODEL_ID": "meta-llama/Meta-Llama-3.1-8B-Instruct", "DEPLOY_SOURCE": "pulumi", "VLLM_LOGGING_LEVEL": "INFO",
           "AIP_X": "1"}
    reg = the_deployment(deploy(make_args(env=env)))
    names = [e["name"] for e in unwrap_secrets(reg.inputs)["modelConfig"]["containerSpec"]["envs"]]
    expect(reg.name, "containerSpec.envs names", names, list(env))


def test_container_fields_reach_the_container_spec() -> None:
    reg = the_deployment(deploy(make_args(port=7080, health_path="/healthz", predict_route="/predict")))
    spec = unwrap_secrets(reg.inputs)["modelConfig"]["containerSpec"]
    expect(reg.name, "containerSpec.ports", spec["ports"], [{"containerPort": 7080}])
    expect(reg.name, "containerSpec.healthRoute", spec["healthRoute"], "/healthz")
    expect(reg.name, "containerSpec.predictRoute", spec["predictRoute"], "/predict")


def test_model_id_in_env_must_be_the_model_served() -> None:
    message = _problems(env={"MODEL_ID": "google/gemma-3-1b-it"})
    assert "container.env.MODEL_ID is 'google/gemma-3-1b-it'" in message, f"llm: error was {message!r}"
    message = _problems(predict_route=None)
    assert "container.predict_route is unset" in message, f"llm: error was {message!r}"


@pytest.mark.parametrize("image,fragment", [
    (IMAGE.rsplit(":", 1)[0] + ":latest", "`latest` moves under you"),
    (IMAGE.rsplit(":", 1)[0], "without a tag"),
    (IMAGE.rsplit(":", 1)[0] + "@sha256:abc", "a digest must be sha256: followed by 64 hex digits"),
])
def test_unpinned_images_rejected(image: str, fragment: str) -> None:
    message = _problems(image=image)
    assert fragment in message, f"llm: error for image {image} was {message!r}"


def test_digest_image_accepted() -> None:
    image = IMAGE.rsplit(":", 1)[0] + "@sha256:" + "a" * 64
    reg = the_deployment(deploy(make_args(image=image)))
    expect(reg.name, "containerSpec.imageUri", unwrap_secrets(reg.inputs)["modelConfig"]["containerSpec"]["imageUri"], image)


def test_all_problems_reported_at_once() -> None:
    message = _problems(count=2, env={"HF_TOKEN": "x"}, image="vllm/vllm-openai:latest", port=0, min_replicas=0)
    for fragment in ("accelerator_count 2", "container.env.HF_TOKEN", ":latest", "container.port: got 0",
                     "min_replicas is 0"):
        assert fragment in message, f"llm: combined error lacks {fragment!r}: {message!r}"


def test_deployment_timeout_over_two_hours_rejected() -> None:
    message = _problems(deployment_timeout_seconds=7201)
    assert "deployment_timeout_seconds is 7201" in message, f"llm: error was {message!r}"


LORA_ARGS = ("--host=0.0.0.0", "--port=8080", "--model=meta-llama/Meta-Llama-3.1-8B-Instruct",
             "--tensor-parallel-size=1", "--enable-lora", "--max-loras=1")


def test_lora_grant_only_on_the_bucket() -> None:
    run = deploy(make_args(args=LORA_ARGS, lora_bucket="mock-project-models",
                           lora_adapters={"support": "loras/support-v3"}))
    grants = run.of_type(BUCKET_MEMBER)
    assert len(grants) == 1, f"llm: expected one bucket grant, found {[g.name for g in grants]}"
    grant = grants[0]
    expect(grant.name, "bucket", grant.inputs["bucket"], "mock-project-models")
    expect(grant.name, "role", grant.inputs["role"], "roles/storage.objectViewer")
    expect(grant.name, "member", grant.inputs["member"], f"serviceAccount:{SERVING_SA}")
    expect(grant.name, "name", grant.name, "llm-lora-reader")
    assert_child_of(grant, "llm")
    broader = [r.type + " " + r.name for r in run.registrations
               if "IAM" in r.type and r.type != BUCKET_MEMBER]
    assert not broader, f"llm: IAM beyond the bucket grant: {broader}"
    out = run.outputs["deployment"].value
    expect("llm outputs", "lora_adapters", out["lora_adapters"], {"support": "gs://mock-project-models/loras/support-v3"})


def test_lora_adapters_need_their_bucket_and_a_prefix_inside_it() -> None:
    message = _problems(args=LORA_ARGS, lora_adapters={"support": "gs://other/loras/x"})
    assert "lora_bucket is empty" in message and "adapters in other buckets are not readable" in message, \
        f"llm: error was {message!r}"
    message = _problems(args=LORA_ARGS, lora_adapters={"hub": "hf://not-a-repo"})
    assert "lora_adapters.hub: 'hf://not-a-repo' is not a Hugging Face repository" in message, f"llm: error was {message!r}"


def test_hub_adapters_pass_as_repository_ids_and_need_no_bucket_grant() -> None:
    run = deploy(make_args(args=LORA_ARGS, lora_adapters={"sql": "hf://acme/llama-3.1-8b-sql-lora"}))
    grants = run.of_type(BUCKET_MEMBER)
    assert not grants, f"llm: a Hub adapter needs no bucket grant, found {[g.name for g in grants]}"
    out = run.outputs["deployment"].value
    expect("llm outputs", "lora_adapters", out["lora_adapters"], {"sql": "acme/llama-3.1-8b-sql-lora"})


def test_client_outputs_are_exactly_the_contract() -> None:
    run = deploy(make_args(args=LORA_ARGS, lora_bucket="mock-project-models",
                           lora_adapters={"support": "loras/support-v3/", "sql": "hf://acme/sql-lora"}))
    out = run.outputs["deployment"].value
    expect("llm outputs", "keys", sorted(out), sorted(client_output_keys()))
    expect("llm outputs", "platform", out["platform"], "vertex")
    expect("llm outputs", "managed", out["managed"], True)
    expect("llm outputs", "model", out["model"], "meta-llama/Meta-Llama-3.1-8B-Instruct")
    expect("llm outputs", "lora_adapters", out["lora_adapters"],
           {"support": "gs://mock-project-models/loras/support-v3", "sql": "acme/sql-lora"})
    assert out["deployed_model_id"], f"llm outputs: deployed_model_id is {out['deployed_model_id']!r}"


def adopt(**overrides: Any) -> RunResult:
    values: dict[str, Any] = dict(endpoint_id="1234567890123456789", region="us-central1",
                                  hugging_face_model_id="meta-llama/Llama-3.1-8B-Instruct", dedicated_endpoint=True,
                                  project="mock-project", project_number=MOCK_PROJECT_NUMBER)
    values.update(overrides)

    def program() -> None:
        endpoint = AdoptedVertexEndpoint("byhand", AdoptedVertexEndpointArgs(**values))
        pulumi.export("deployment", endpoint.client_outputs())

    return run_under_mocks(program)


def test_adopted_endpoint_exports_the_same_contract_and_creates_no_endpoint() -> None:
    run = adopt(service_account_email=SERVING_SA, lora_bucket="mock-project-models",
                lora_adapters={"support": "loras/support-v3"})
    created = sorted(r.type for r in run.registrations if r.custom)
    expect("byhand", "resources created", created, [BUCKET_MEMBER])
    expect("byhand", "type", run.named("byhand").type, ADOPTED_TYPE_TOKEN)
    out = run.outputs["deployment"].value
    expect("byhand outputs", "keys", sorted(out), sorted(client_output_keys()))
    name = f"projects/{MOCK_PROJECT_NUMBER}/locations/us-central1/endpoints/1234567890123456789"
    expect("byhand outputs", "endpoint_name", out["endpoint_name"], name)
    expect("byhand outputs", "predict_url", out["predict_url"],
           f"https://1234567890123456789.us-central1-{MOCK_PROJECT_NUMBER}.prediction.vertexai.goog/v1/{name}:predict")
    expect("byhand outputs", "managed", out["managed"], False)
    expect("byhand outputs", "deployed_model_id", out["deployed_model_id"], None)
    expect("byhand outputs", "lora_adapters", out["lora_adapters"], {"support": "gs://mock-project-models/loras/support-v3"})


def test_adopted_endpoint_needs_a_numeric_id() -> None:
    with pytest.raises(ValueError) as caught:
        adopt(endpoint_id="projects/p/locations/us-central1/endpoints/x")
    assert "endpoint_id 'projects/p/locations/us-central1/endpoints/x' is not a Vertex AI endpoint id" in str(caught.value)


def test_children_are_parented_and_named_after_the_component() -> None:
    run = deploy(make_args(args=LORA_ARGS, lora_bucket="b-models", lora_adapters={"a": "loras/a"}),
                 name="chat")
    component = run.named("chat")
    expect("chat", "type", component.type, TYPE_TOKEN)
    children = [r for r in run.registrations if r is not component]
    expect("chat", "children", sorted(r.name for r in children), ["chat-deployment", "chat-lora-reader"])
    for child in children:
        assert_child_of(child, "chat")


def assert_child_of(child, component_name: str) -> None:
    # The parent chain is part of the URN (`...$<parent type>$<child type>::<name>`); the recorded
    # `parent` field is blank for grandchildren of the stack, so the URN is what is checked here.
    parent_type = f"{TYPE_TOKEN}$"
    assert parent_type in child.urn, f"{child.type} {child.name}: not a child of the component ({child.urn})"
    assert child.name.startswith(f"{component_name}-"), f"{child.type} {child.name}: not named after {component_name}"
