"""CloudRunVllmService under the mock engine: what it registers, what it refuses, what it leaks (nothing)."""

from __future__ import annotations

import dataclasses
import json

import pulumi
import pulumi_gcp as gcp
import pytest

from components.cloudrun import (
    METRICS_SIDECAR_IMAGE,
    METRICS_SIDECAR_SCRAPE_PORT,
    TYPE_TOKEN,
    CloudRunVllmService,
    CloudRunVllmServiceArgs,
    GcsVolume,
    SecretRef,
    invoker_key,
)
from components.container import ServingContainer
from offline.mocks import mask_secrets
from offline.runner import RunResult, run_under_mocks

SERVICE = "gcp:cloudrunv2/service:Service"
INVOKER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
DIGEST_IMAGE = "us-central1-docker.pkg.dev/mock-project/serving/vllm-gemma-3-1b-it@sha256:" + "ab" * 32

# The tutorial: gemma-3-1b-it with vLLM on one L4, its own service account, scale to zero.
CONTAINER = ServingContainer(
    image=DIGEST_IMAGE,
    command=("python3", "-m", "vllm.entrypoints.openai.api_server"),
    args=("--host=0.0.0.0", "--port=8080", "--model=google/gemma-3-1b-it",
          "--served-model-name=gemma-3-1b-it", "--gpu-memory-utilization=0.9"),
    env={"HF_HUB_OFFLINE": "1"},
    port=8080,
    health_path="/health",
    served_model_name="gemma-3-1b-it",
)
TUTORIAL = CloudRunVllmServiceArgs(
    project="mock-project",
    region="us-central1",
    service_name="gemma-3-1b-it-service",
    container=CONTAINER,
    service_account_email="gemma-3-1b-it-service-sa@mock-project.iam.gserviceaccount.com",
    min_cpu=4,
    min_memory_gib=16,
    gpu_type="nvidia-l4",
    cpu=8,
    memory_gib=32,
    gpu_zonal_redundancy=True,
    min_replicas=0,
    max_replicas=1,
    max_concurrency=80,
    request_timeout_seconds=600,
    startup_timeout_seconds=1200,
    labels={"environment": "test", "deployment": "gemma"},
)


def with_container(**changes) -> CloudRunVllmServiceArgs:
    return dataclasses.replace(TUTORIAL, container=dataclasses.replace(CONTAINER, **changes))


def run(args: CloudRunVllmServiceArgs, name: str = "gemma", **kwargs) -> RunResult:
    def program() -> None:
        svc = CloudRunVllmService(name, args)
        for key in ("uri", "service_name", "proxy_command", "curl_example", "openai_example", "served_model_name"):
            pulumi.export(key, getattr(svc, key))

    return run_under_mocks(program, **kwargs)


def service_of(result: RunResult, name: str = "gemma") -> dict:
    return dict(result.named(f"{name}-service").inputs)


def container_of(result: RunResult, name: str = "gemma", container: str = "vllm") -> dict:
    containers = service_of(result, name)["template"]["containers"]
    matches = [c for c in containers if c.get("name") == container]
    assert len(matches) == 1, f"{name}-service: expected one {container!r} container, got {[c.get('name') for c in containers]}"
    return matches[0]


def env_of(result: RunResult) -> dict[str, dict]:
    return {e["name"]: e for e in container_of(result).get("envs", [])}


def rejected(args: CloudRunVllmServiceArgs) -> str:
    with pytest.raises(ValueError) as info:
        run(args)
    return str(info.value)


# ---------------------------------------------------------------------------
# The tutorial deployment reproduced.


def test_tutorial_service_has_the_gpu_shape_cloud_run_needs():
    result = run(TUTORIAL)
    svc = service_of(result)
    template = svc["template"]
    c = container_of(result)
    where = "gemma-service"
    assert template["nodeSelector"] == {"accelerator": "nvidia-l4"}, f"{where}: node selector {template.get('nodeSelector')}"
    assert c["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}, \
        f"{where}: limits {c['resources'].get('limits')}"
    assert c["resources"]["cpuIdle"] is False, f"{where}: GPUs need instance-based billing (cpuIdle False)"
    assert c["resources"]["startupCpuBoost"] is True, f"{where}: startup CPU boost is off"
    assert template["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2", f"{where}: {template.get('executionEnvironment')}"
    assert template["gpuZonalRedundancyDisabled"] is False, f"{where}: zonal redundancy not taken from Args"
    assert c["ports"] == {"name": "http1", "containerPort": 8080}, f"{where}: ports {c.get('ports')}"
    assert template["serviceAccount"] == TUTORIAL.service_account_email, f"{where}: runs as {template.get('serviceAccount')}"
    assert template["scaling"] == {"minInstanceCount": 0, "maxInstanceCount": 1}, f"{where}: scaling {template.get('scaling')}"
    assert template["maxInstanceRequestConcurrency"] == 80, f"{where}: concurrency {template.get('maxInstanceRequestConcurrency')}"
    assert template["timeout"] == "600s", f"{where}: request timeout {template.get('timeout')}"
    assert svc["ingress"] == "INGRESS_TRAFFIC_ALL", f"{where}: ingress {svc.get('ingress')}"
    assert svc["deletionProtection"] is True, f"{where}: deletion protection should default to on"
    assert svc["name"] == "gemma-3-1b-it-service" and svc["location"] == "us-central1", f"{where}: {svc.get('name')} in {svc.get('location')}"
    assert c["image"] == DIGEST_IMAGE, f"{where}: image {c.get('image')}"
    assert c["commands"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"], f"{where}: command {c.get('commands')}"
    assert "--port=8080" in c["args"] and "--model=google/gemma-3-1b-it" in c["args"], f"{where}: args {c.get('args')}"


def test_tutorial_probes_ask_vllm_health_within_the_startup_budget():
    c = container_of(run(TUTORIAL))
    startup, liveness = c["startupProbe"], c["livenessProbe"]
    where = "gemma-service startupProbe"
    assert startup["httpGet"] == {"path": "/health", "port": 8080}, f"{where}: {startup.get('httpGet')}"
    assert startup["periodSeconds"] == 10 and startup["failureThreshold"] == 120, \
        f"{where}: 1200 s budget should be 120 x 10 s, got {startup['failureThreshold']} x {startup['periodSeconds']} s"
    assert startup["timeoutSeconds"] < startup["periodSeconds"], f"{where}: timeout must be shorter than the period"
    assert liveness["httpGet"] == {"path": "/health", "port": 8080}, f"gemma-service livenessProbe: {liveness.get('httpGet')}"


def test_port_and_probes_follow_the_container():
    # Without the metrics sidecar, which only scrapes 8080 (see the sidecar tests below).
    c = container_of(run(dataclasses.replace(with_container(port=9000, health_path="/ready"), metrics_sidecar_image=None)))
    where = "gemma-service"
    assert c["ports"] == {"name": "http1", "containerPort": 9000}, f"{where}: ports {c.get('ports')}"
    assert c["startupProbe"]["httpGet"] == {"path": "/ready", "port": 9000}, f"{where}: startup probe {c['startupProbe']}"
    assert c["livenessProbe"]["httpGet"] == {"path": "/ready", "port": 9000}, f"{where}: liveness probe {c['livenessProbe']}"


def test_startup_threshold_rounds_the_budget_up_to_whole_periods():
    c = container_of(run(dataclasses.replace(TUTORIAL, startup_timeout_seconds=1000, startup_probe_period_seconds=240)))
    probe = c["startupProbe"]
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (240, 5), \
        f"gemma-service startupProbe: 1000 s at 240 s periods needs 5 tries, got {probe}"


def test_labels_switch_and_deletion_protection_reach_the_service():
    result = run(dataclasses.replace(TUTORIAL, gpu_zonal_redundancy=False, deletion_protection=False, ingress="internal",
                                     min_replicas=1, max_replicas=3, max_concurrency=64))
    svc = service_of(result)
    where = "gemma-service"
    assert svc["labels"] == {"environment": "test", "deployment": "gemma"}, f"{where}: labels {svc.get('labels')}"
    assert svc["template"]["labels"] == svc["labels"], f"{where}: revision labels {svc['template'].get('labels')}"
    assert svc["template"]["gpuZonalRedundancyDisabled"] is True, f"{where}: best-effort GPU capacity not requested"
    assert svc["deletionProtection"] is False, f"{where}: deletion protection not taken from Args"
    assert svc["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY", f"{where}: ingress {svc.get('ingress')}"
    assert svc["template"]["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 3}, f"{where}: {svc['template']['scaling']}"
    assert svc["template"]["maxInstanceRequestConcurrency"] == 64, f"{where}: concurrency not taken from Args"


def test_children_are_parented_and_named_after_the_component():
    result = run(dataclasses.replace(TUTORIAL, invokers=("group:ml@example.com",)))
    component = result.named("gemma")
    assert component.type == TYPE_TOKEN, f"gemma: type {component.type}"
    children = [r for r in result.registrations if r is not component]
    assert {r.type for r in children} == {SERVICE, INVOKER}, f"gemma: children {[r.type for r in children]}"
    for child in children:
        assert f"{TYPE_TOKEN}$" in child.urn, f"{child.name}: not parented to the component ({child.urn})"
        assert child.name.startswith("gemma-"), f"{child.name}: name not derived from the component's"


def test_outputs_give_uri_proxy_and_ready_examples():
    result = run(TUTORIAL)
    out = {k: v.value for k, v in result.outputs.items()}
    uri = out["uri"]
    assert uri.startswith("https://gemma-3-1b-it-service-"), f"gemma: uri {uri}"
    assert out["service_name"] == "gemma-3-1b-it-service", f"gemma: service_name {out['service_name']}"
    assert out["proxy_command"] == "gcloud run services proxy gemma-3-1b-it-service --region us-central1 --project mock-project", \
        f"gemma: proxy_command {out['proxy_command']}"
    assert "http://localhost:8080/v1/completions" in out["curl_example"], f"gemma: curl_example {out['curl_example']}"
    assert f"{uri}/v1/completions" in out["curl_example"] and "gcloud auth print-identity-token" in out["curl_example"], \
        f"gemma: curl_example lacks the direct call: {out['curl_example']}"
    assert '"model": "gemma-3-1b-it"' in out["curl_example"], f"gemma: curl_example uses another model: {out['curl_example']}"
    assert f'base_url="{uri}/v1"' in out["openai_example"] and "fetch_id_token" in out["openai_example"], \
        f"gemma: openai_example {out['openai_example']}"
    compile(out["openai_example"], "openai_example", "exec")  # the snippet is valid Python
    assert out["served_model_name"] == "gemma-3-1b-it", f"gemma: served_model_name {out['served_model_name']}"


# ---------------------------------------------------------------------------
# Weights modes as the component sees them.


def test_image_mode_takes_the_build_digest_from_another_resource():
    def program() -> None:
        repo = gcp.artifactregistry.Repository("repo", repository_id="serving", location="us-central1", format="DOCKER")
        image = repo.registry_uri.apply(lambda uri: f"{uri}/vllm-gemma@sha256:{'cd' * 32}")
        svc = CloudRunVllmService("gemma", with_container(image=image))
        pulumi.export("uri", svc.uri)

    result = run_under_mocks(program)
    image = container_of(result)["image"]
    assert image == f"us-central1-docker.pkg.dev/mock-project/serving/vllm-gemma@sha256:{'cd' * 32}", f"gemma-service: image {image}"


def test_image_from_another_resource_is_still_checked_for_pinning():
    def program() -> None:
        repo = gcp.artifactregistry.Repository("repo", repository_id="serving", location="us-central1", format="DOCKER")
        CloudRunVllmService("gemma", with_container(image=repo.registry_uri.apply(lambda u: f"{u}/vllm:latest")))

    with pytest.raises(Exception, match="latest"):
        run_under_mocks(program)


def test_gcs_mode_mounts_the_bucket_read_only():
    args = dataclasses.replace(
        with_container(args=CONTAINER.args[:2] + ("--model=/models/google/gemma-3-1b-it", "--served-model-name=gemma-3-1b-it")),
        gcs_volume=GcsVolume(bucket="llm-dev-models"))
    result = run(args)
    template = service_of(result)["template"]
    volumes = template["volumes"]
    assert volumes == [{"name": "model-weights", "gcs": {"bucket": "llm-dev-models", "readOnly": True,
                                                         "mountOptions": ["implicit-dirs"]}}], f"gemma-service: volumes {volumes}"
    mounts = container_of(result)["volumeMounts"]
    assert mounts == [{"name": "model-weights", "mountPath": "/models"}], f"gemma-service: volume mounts {mounts}"
    assert template["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2", "gemma-service: GCS volumes need gen2"


def test_hub_mode_reads_hf_token_from_secret_manager():
    args = dataclasses.replace(with_container(env={}), hf_token=SecretRef(secret="llm-dev-hf-token"))
    env = env_of(run(args))
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueSource": {"secretKeyRef": {"secret": "llm-dev-hf-token",
                                                                                  "version": "latest"}}}, \
        f"gemma-service: HF_TOKEN env {env.get('HF_TOKEN')}"
    assert "value" not in env["HF_TOKEN"], "gemma-service: HF_TOKEN has a literal value"


CANARY = "hf_CanaryCanaryCanaryCanary0123456789"


def test_a_secret_token_never_appears_in_plaintext():
    """The stack's pattern: token from secret config -> SecretVersion; the service only references the secret."""

    def program() -> None:
        token = pulumi.Config("llm-serving").require_secret("hfToken")
        secret = gcp.secretmanager.Secret("hf-token", secret_id="llm-dev-hf-token", replication={"auto": {}})
        gcp.secretmanager.SecretVersion("hf-token-v", secret=secret.id, secret_data=token)
        svc = CloudRunVllmService("gemma", dataclasses.replace(
            TUTORIAL, hf_token=SecretRef(secret=secret.secret_id)))
        for key in ("uri", "curl_example", "openai_example", "proxy_command"):
            pulumi.export(key, getattr(svc, key))

    result = run_under_mocks(program, config={"llm-serving:hfToken": CANARY}, secret_keys=["llm-serving:hfToken"])
    assert result.named("hf-token-v").inputs, "hf-token-v: not registered, the canary never entered the program"
    for reg in result.registrations:
        visible = json.dumps(mask_secrets(reg.inputs), default=str)
        assert CANARY not in visible, f"{reg.name}: the token is in its inputs in plaintext"
    for key, output in result.outputs.items():
        assert CANARY not in json.dumps(output.value, default=str), f"stack output {key}: holds the token"
    env = env_of(result)
    assert env["HF_TOKEN"]["valueSource"]["secretKeyRef"]["secret"] == "llm-dev-hf-token", \
        f"gemma-service: HF_TOKEN should reference the secret, got {env['HF_TOKEN']}"


# ---------------------------------------------------------------------------
# Invokers.


def test_each_invoker_gets_an_additive_run_invoker_grant_with_a_stable_name():
    members = ("group:ml@example.com", "serviceAccount:loadtest@mock-project.iam.gserviceaccount.com")
    first = run(dataclasses.replace(TUTORIAL, invokers=members))
    grants = first.of_type(INVOKER)
    assert len(grants) == 2, f"gemma: expected 2 ServiceIamMember children, got {[g.name for g in grants]}"
    for grant in grants:
        assert grant.inputs["role"] == "roles/run.invoker", f"{grant.name}: role {grant.inputs.get('role')}"
        assert grant.inputs["name"] == "gemma-3-1b-it-service", f"{grant.name}: bound to {grant.inputs.get('name')}"
        assert grant.name == f"gemma-invoker-{invoker_key(grant.inputs['member'])}", f"{grant.name}: name not from member"
    assert {g.inputs["member"] for g in grants} == set(members), f"gemma: members {[g.inputs['member'] for g in grants]}"
    reordered = run(dataclasses.replace(TUTORIAL, invokers=tuple(reversed(members))))
    assert {g.name for g in reordered.of_type(INVOKER)} == {g.name for g in grants}, \
        "gemma: reordering invokers renamed (would replace) a grant"
    types = {r.type for r in first.registrations}
    assert not any("IamBinding" in t or "IamPolicy" in t for t in types), f"gemma: authoritative IAM registered: {types}"


def test_public_invoker_is_allowed_only_when_asked_for():
    result = run(dataclasses.replace(TUTORIAL, invokers=("allUsers",), allow_public=True))
    members = [g.inputs["member"] for g in result.of_type(INVOKER)]
    assert members == ["allUsers"], f"gemma: with allow_public the grant should exist, got {members}"


# ---------------------------------------------------------------------------
# Bad values.


@pytest.mark.parametrize("change, field, hint", [
    (dict(gpu_type="nvidia-h100-80gb"), "gpu_type", "nvidia-l4"),
    (dict(cpu=2), "cpu", "at least 4"),
    (dict(memory_gib=8), "memory_gib", "at least 16"),
    (dict(gpu_type="nvidia-rtx-pro-6000", min_cpu=20, min_memory_gib=80), "cpu", "at least 20"),
    (dict(max_concurrency=0), "max_concurrency", "1 to 1000"),
    (dict(invokers=("allUsers",)), "invokers", "allow_public=True"),
    (dict(invokers=("allAuthenticatedUsers",)), "invokers", "public"),
    (dict(container=dataclasses.replace(CONTAINER, image="vllm/vllm-openai:latest")), "container.image", "latest"),
    (dict(container=dataclasses.replace(CONTAINER, image="vllm/vllm-openai")), "container.image", "without a tag"),
    (dict(startup_timeout_seconds=3600), "startup_timeout_seconds", "1800"),
    (dict(startup_probe_period_seconds=300), "startup_probe_period_seconds", "240"),
    (dict(request_timeout_seconds=7200), "request_timeout_seconds", "3600"),
    (dict(container=dataclasses.replace(CONTAINER, port=0)), "container.port", "1-65535"),
    (dict(container=dataclasses.replace(CONTAINER, served_model_name="")), "container.served_model_name", "`model`"),
    (dict(container=dataclasses.replace(CONTAINER, env={"HF_TOKEN": "x"})), "container.env.HF_TOKEN", "secret_env"),
    (dict(container=dataclasses.replace(CONTAINER, env={"PORT": "8080"})), "container.env.PORT", "Cloud Run itself"),
    (dict(hf_token=SecretRef(secret="hf_abcdefghijklmnopqrstuvwxyz")), "secret_env.HF_TOKEN.secret", "literal token"),
    (dict(hf_token=SecretRef(secret="a"), secret_env={"HF_TOKEN": SecretRef(secret="b")}), "secret_env.HF_TOKEN", "keep one"),
    (dict(ingress="public"), "ingress", "internal"),
    (dict(service_name="Gemma_Service"), "service_name", "lowercase"),
    (dict(gcs_volume=GcsVolume(bucket="gs://b")), "gcs_volume.bucket", "bare bucket name"),
    (dict(min_replicas=2, max_replicas=1), "max_replicas", "min_replicas"),
    (dict(labels={"Team": "x"}), "labels.Team", "lowercase"),
])
def test_bad_values_are_rejected_with_the_field_and_the_fix(change, field, hint):
    message = rejected(dataclasses.replace(TUTORIAL, **change))
    assert "'gemma'" in message, f"gemma {change}: error does not name the resource: {message}"
    assert f"{field}:" in message and hint in message, f"gemma {change}: expected {field!r} and {hint!r} in: {message}"


def test_all_problems_are_reported_at_once():
    message = rejected(dataclasses.replace(TUTORIAL, cpu=1, memory_gib=1, max_concurrency=0, gpu_type="tpu"))
    for field in ("cpu:", "memory_gib:", "max_concurrency:", "gpu_type:"):
        assert field in message, f"gemma: {field} missing from the combined error: {message}"


def test_nothing_is_registered_when_arguments_are_invalid():
    captured: list = []

    def program() -> None:
        try:
            CloudRunVllmService("gemma", dataclasses.replace(TUTORIAL, cpu=1))
        except ValueError as error:
            captured.append(error)

    result = run_under_mocks(program)
    assert captured, "gemma: invalid cpu was accepted"
    assert result.registrations == [], f"gemma: registered {[r.name for r in result.registrations]} despite bad args"


# ---------------------------------------------------------------------------
# The metrics sidecar.


def test_metrics_sidecar_scrapes_vllm_and_holds_no_gpu():
    result = run(TUTORIAL)
    containers = service_of(result)["template"]["containers"]
    assert [c["name"] for c in containers] == ["vllm", "metrics-collector"], "gemma-service: containers"
    sidecar = container_of(result, container="metrics-collector")
    assert sidecar["image"] == METRICS_SIDECAR_IMAGE
    assert sidecar["dependsOns"] == ["vllm"], "gemma-service: the sidecar must wait for vLLM to be healthy"
    assert "nvidia.com/gpu" not in sidecar["resources"]["limits"], "gemma-service: the GPU belongs to vLLM only"
    assert "ports" not in sidecar, "gemma-service: only the vLLM container may take the ingress port"
    # The sidecar's default RunMonitoring scrapes :8080/metrics; vLLM listens there.
    assert container_of(result)["ports"]["containerPort"] == METRICS_SIDECAR_SCRAPE_PORT


def test_metrics_sidecar_refuses_a_port_it_would_not_scrape():
    other_port = dataclasses.replace(CONTAINER, port=8000, args=tuple(
        "--port=8000" if a == "--port=8080" else a for a in CONTAINER.args))
    message = rejected(dataclasses.replace(TUTORIAL, container=other_port))
    assert "metrics_sidecar_image" in message and "8080" in message
    run(dataclasses.replace(TUTORIAL, container=other_port, metrics_sidecar_image=None))  # accepted without the sidecar


def test_metrics_sidecar_can_be_left_out():
    result = run(dataclasses.replace(TUTORIAL, metrics_sidecar_image=None))
    assert [c["name"] for c in service_of(result)["template"]["containers"]] == ["vllm"]


def test_metrics_sidecar_image_must_be_pinned():
    message = rejected(dataclasses.replace(TUTORIAL, metrics_sidecar_image="us-docker.pkg.dev/x/y/sidecar:latest"))
    assert "metrics_sidecar_image" in message
