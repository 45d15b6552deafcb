"""VllmGkeWorkload under the mock engine: the tutorial's Llama 3.1 70B on TPU v6e, reproduced and guarded."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import kubernetes_validate
import pulumi
import pytest
import yaml

from components.container import ServingContainer
from components.gke_cluster import AcceleratorPlacement, GkeCluster, GkeClusterArgs, NodePoolSpec
from components.gke_workload import DEFAULT_MOUNT_OPTIONS, HpaBehavior, VllmGkeWorkload, VllmGkeWorkloadArgs
from offline.manifests import write_kubernetes_manifests
from offline.mocks import MOCK_PROJECT_NUMBER, is_wrapped_secret, mask_secrets, unwrap_secrets
from offline.runner import run_under_mocks
from stacks.catalog.gke import gke_hardware

CANARY = "hf_CANARYcanaryCANARYcanary0123456789"
TUTORIAL_IMAGE = "docker.io/vllm/vllm-tpu:2e33fe419186c65a18da6668972d61d7bbc31564"
TUTORIAL_ARGS = ("--host=0.0.0.0", "--port=8000", "--tensor-parallel-size=8", "--max-model-len=8192",
             "--model=meta-llama/Llama-3.1-70B", "--download-dir=/data")
TUTORIAL_MOUNT_OPTIONS = ("implicit-dirs,file-cache:enable-parallel-downloads:true,file-cache:parallel-downloads-per-file:100,"
                      "file-cache:max-parallel-downloads:-1,file-cache:download-chunk-size-mb:10,file-cache:max-size-mb:-1")
K8S_VERSION = "1.33.0"


TUTORIAL_CONTAINER = ServingContainer(
    image=TUTORIAL_IMAGE, command=("python3", "-m", "vllm.entrypoints.openai.api_server"), args=TUTORIAL_ARGS,
    env={"VLLM_XLA_CACHE_PATH": "/data/xla-cache"}, port=8000, health_path="/health",
    served_model_name="meta-llama/Llama-3.1-70B")
CONTAINER_FIELDS = {f.name for f in dataclasses.fields(ServingContainer)}


def workload_args(provider, accelerator, **overrides) -> VllmGkeWorkloadArgs:
    """The tutorial's Args; overrides naming a ServingContainer field change the container."""
    container = dataclasses.replace(TUTORIAL_CONTAINER, **{k: v for k, v in overrides.items() if k in CONTAINER_FIELDS})
    base = dict(provider=provider, project="mock-project", project_number=MOCK_PROJECT_NUMBER,
                model_bucket="mock-project-llm-dev-models", container=container, accelerator=accelerator,
                hf_token=pulumi.Output.secret(CANARY), namespace="llm-serving", app_name="vllm-tpu",
                service_account_name="vllm-ksa", hf_secret_name="hf-secret", min_replicas=1, max_replicas=2,
                autoscaling_metric="vllm:num_requests_waiting", autoscaling_target=10.0,
                startup_timeout_seconds=3600, mount_path="/data",
                labels={"environment": "dev"}, cpu_request="45", memory_request="360Gi",
                bucket_prefixes=("models--meta-llama--Llama-3.1-70B/", "xla-cache/"))
    base.update({k: v for k, v in overrides.items() if k not in CONTAINER_FIELDS})
    return VllmGkeWorkloadArgs(**base)


def run_tutorial(pools=None, pool="tpu", **overrides):
    pools = pools or {"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_min_node_count=1,
                                          total_max_node_count=2)}

    def program():
        cluster = GkeCluster("gke", GkeClusterArgs(project="mock-project", location="us-east5-b",
                                                   cluster_name="llm-dev-gke", hardware=gke_hardware(),
                                                   node_pools=pools))
        workload = VllmGkeWorkload("llama", workload_args(cluster.provider, cluster.placement(pool), **overrides))
        for key in ("namespace", "service_name", "service_port", "hpa_metric_name", "in_cluster_url",
                    "load_balancer_ip", "port_forward_command"):
            pulumi.export(key, getattr(workload, key))

    return run_under_mocks(program)


def error_of(**overrides) -> str:
    with pytest.raises(ValueError) as caught:
        run_tutorial(**overrides)
    return str(caught.value)


@pytest.fixture(scope="module")
def tutorial():
    return run_tutorial()


def pod_spec(result):
    return result.named("llama-deployment").inputs["spec"]["template"]["spec"]


def container(result):
    containers = pod_spec(result)["containers"]
    assert len(containers) == 1, f"llama-deployment: expected one container, got {len(containers)}"
    return containers[0]


def test_tutorial_deployment_placement(tutorial):
    spec = pod_spec(tutorial)
    assert spec["nodeSelector"] == {"cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice",
                                    "cloud.google.com/gke-tpu-topology": "2x4"}, f"llama-deployment: {spec['nodeSelector']}"
    assert {"key": "google.com/tpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"], \
        f"llama-deployment: tolerations {spec['tolerations']}"
    assert spec["serviceAccountName"] == "vllm-ksa", f"llama-deployment: runs as {spec.get('serviceAccountName')!r}"
    assert container(tutorial)["resources"]["limits"] == {"google.com/tpu": "8"}, \
        f"llama-deployment: limits {container(tutorial)['resources']}"


def test_tutorial_container(tutorial):
    c = container(tutorial)
    assert c["image"] == TUTORIAL_IMAGE, f"llama-deployment: image {c['image']!r}"
    assert c["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"], f"llama-deployment: {c['command']}"
    assert c["args"] == list(TUTORIAL_ARGS), f"llama-deployment: args {c['args']}"
    env = {e["name"]: e for e in c["env"]}
    assert env["VLLM_XLA_CACHE_PATH"] == {"name": "VLLM_XLA_CACHE_PATH", "value": "/data/xla-cache"}, env
    for name in ("HUGGING_FACE_HUB_TOKEN", "HF_TOKEN"):
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": "hf-secret", "key": "hf_api_token"}}}, \
            f"llama-deployment: {name} is {env.get(name)}, expected a secretKeyRef to hf-secret/hf_api_token"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"gcs-fuse-csi-ephemeral": "/data", "dshm": "/dev/shm"}, f"llama-deployment: mounts {mounts}"


def test_tutorial_volumes_and_annotations(tutorial):
    template = tutorial.named("llama-deployment").inputs["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "gke-gcsfuse/volumes": "true", "gke-gcsfuse/cpu-limit": "0",
        "gke-gcsfuse/memory-limit": "0", "gke-gcsfuse/ephemeral-storage-limit": "0",
    }, f"llama-deployment: pod annotations {template['metadata'].get('annotations')}"
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["gke-gcsfuse-cache"]["emptyDir"] == {"medium": "Memory"}, volumes.get("gke-gcsfuse-cache")
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory"}, volumes.get("dshm")
    csi = volumes["gcs-fuse-csi-ephemeral"]["csi"]
    assert csi["driver"] == "gcsfuse.csi.storage.gke.io", f"llama-deployment: csi {csi}"
    assert csi["volumeAttributes"]["bucketName"] == "mock-project-llm-dev-models", f"llama-deployment: csi {csi}"
    assert csi["volumeAttributes"]["mountOptions"] == TUTORIAL_MOUNT_OPTIONS == DEFAULT_MOUNT_OPTIONS, \
        f"llama-deployment: mountOptions {csi['volumeAttributes']['mountOptions']!r}"


def test_ports_agree(tutorial):
    c = container(tutorial)
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}], f"llama-deployment: {c['ports']}"
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    service = tutorial.named("llama-service").inputs["spec"]
    assert service["type"] == "LoadBalancer", f"llama-service: type {service['type']}"
    (port,) = service["ports"]
    assert port["port"] == 8000, f"llama-service: port {port}"
    monitor = tutorial.named("llama-podmonitoring").inputs
    (endpoint,) = monitor["spec"]["endpoints"]

    def resolve(p):
        return named.get(p, p) if isinstance(p, str) else p

    assert resolve(port["targetPort"]) == resolve(endpoint["port"]) == 8000, \
        f"llama-service targetPort {port['targetPort']!r} / llama-podmonitoring port {endpoint['port']!r} / " \
        f"container ports {named} disagree"
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s", f"llama-podmonitoring: {endpoint}"
    selector = tutorial.named("llama-deployment").inputs["spec"]["selector"]["matchLabels"]
    assert monitor["spec"]["selector"]["matchLabels"] == selector == service["selector"], \
        f"llama-podmonitoring/llama-service selectors differ from the Deployment's {selector}"
    assert monitor["apiVersion"] == "monitoring.googleapis.com/v1" and monitor["kind"] == "PodMonitoring", monitor


def test_probes(tutorial):
    c = container(tutorial)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}, f"llama-deployment: {probe} {c[probe]}"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 3600, f"llama-deployment: startup budget {startup}"
    other = run_tutorial(startup_timeout_seconds=1800, probe_period_seconds=15)
    assert container(other)["startupProbe"]["failureThreshold"] == 120, container(other)["startupProbe"]


def test_port_and_health_path_follow_the_container():
    result = run_tutorial(port=9000, health_path="/ready")
    c = container(result)
    assert c["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}], f"llama-deployment: {c['ports']}"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/ready", "port": "http"}, f"llama-deployment: {probe} {c[probe]}"
    ports = result.named("llama-service").inputs["spec"]["ports"]
    assert [p["port"] for p in ports] == [9000], f"llama-service: ports {ports}"
    assert result.outputs["in_cluster_url"].value.endswith(":9000"), result.outputs["in_cluster_url"].value


def test_hpa(tutorial):
    hpa = tutorial.named("llama-hpa").inputs["spec"]
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods", f"llama-hpa: {metric}"
    name = metric["pods"]["metric"]["name"]
    assert re.fullmatch(r"prometheus\.googleapis\.com\|vllm:num_requests_waiting\|gauge", name), f"llama-hpa: metric {name!r}"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "10"}, f"llama-hpa: {metric['pods']['target']}"
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm-tpu"}, hpa["scaleTargetRef"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 2), f"llama-hpa: {hpa}"
    assert tutorial.outputs["hpa_metric_name"].value == "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
    deployment = tutorial.named("llama-deployment").inputs["spec"]
    assert "replicas" not in deployment, f"llama-deployment: sets replicas={deployment.get('replicas')}; the HPA owns it"


def test_kv_cache_metric():
    result = run_tutorial(autoscaling_metric="vllm:kv_cache_usage_perc", autoscaling_target=0.8)
    metric = result.named("llama-hpa").inputs["spec"]["metrics"][0]["pods"]
    assert metric["metric"]["name"] == "prometheus.googleapis.com|vllm:kv_cache_usage_perc|gauge", metric
    assert metric["target"]["averageValue"] == "800m", f"llama-hpa: {metric['target']}"


def test_service_internal_by_default(tutorial):
    annotations = tutorial.named("llama-service").inputs["metadata"].get("annotations", {})
    assert annotations.get("networking.gke.io/load-balancer-type") == "Internal", f"llama-service: {annotations}"
    public = run_tutorial(public_load_balancer=True, api_key=pulumi.Output.secret(API_KEY_CANARY))
    public_annotations = public.named("llama-service").inputs["metadata"].get("annotations") or {}
    assert "networking.gke.io/load-balancer-type" not in public_annotations, f"llama-service (public): {public_annotations}"
    assert public.named("llama-service").inputs["spec"]["externalTrafficPolicy"] == "Local", \
        "llama-service: client addresses must reach the pod for the NetworkPolicy's CIDR rules"


def test_public_load_balancer_without_api_key_is_refused():
    assert "unauthenticated internet endpoint" in error_of(public_load_balancer=True)


PRINCIPAL = ("principal://iam.googleapis.com/projects/123456789012/locations/global/"
             "workloadIdentityPools/mock-project.svc.id.goog/subject/ns/llm-serving/sa/vllm-ksa")


def test_bucket_access_is_listing_plus_own_prefixes(tutorial):
    grants = {g.name: g.inputs for g in tutorial.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")}
    assert set(grants) == {"llama-bucket-list", "llama-bucket-prefixes"}, f"bucket grants: {sorted(grants)}"
    for name, grant in grants.items():
        assert grant["member"] == PRINCIPAL and grant["bucket"] == "mock-project-llm-dev-models", f"{name}: {grant}"
        assert grant.get("condition", {}).get("expression"), f"{name}: unconditional grant on the whole bucket"
    listing = grants["llama-bucket-list"]
    assert listing["role"] == "roles/storage.objectViewer"
    assert listing["condition"]["expression"] == 'resource.name == "projects/_/buckets/mock-project-llm-dev-models"', \
        f"llama-bucket-list: {listing['condition']}"
    objects = grants["llama-bucket-prefixes"]
    assert objects["role"] == "roles/storage.objectUser"
    assert objects["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/mock-project-llm-dev-models/objects/models--meta-llama--Llama-3.1-70B/")'
        ' || resource.name.startsWith("projects/_/buckets/mock-project-llm-dev-models/objects/xla-cache/")'), \
        f"llama-bucket-prefixes: {objects['condition']}"
    storage_roles = [r.name for r in tutorial.of_type("gcp:projects/iAMMember:IAMMember") if "storage" in r.inputs["role"]]
    assert not storage_roles, f"project-wide storage roles granted: {storage_roles}"


def test_bucket_prefixes_are_required():
    assert "bucket_prefixes, read_prefixes: give the object prefixes" in error_of(bucket_prefixes=(), read_prefixes=())
    assert "read_prefixes: got '/models/x'" in error_of(read_prefixes=("/models/x",))


def test_read_prefixes_get_read_only_object_access():
    result = run_tutorial(read_prefixes=("models/meta-llama/Llama-3.1-70B/abc/",), bucket_prefixes=("xla-cache/llama/",))
    grant = result.named("llama-bucket-read")
    assert grant.inputs["role"] == "roles/storage.objectViewer", f"llama-bucket-read: {grant.inputs['role']}"
    assert grant.inputs["condition"]["expression"].endswith('/objects/models/meta-llama/Llama-3.1-70B/abc/")'), \
        f"llama-bucket-read: {grant.inputs['condition']}"
    writers = [r for r in result.registrations if r.type == "gcp:storage/bucketIAMMember:BucketIAMMember"
               and r.inputs["role"] == "roles/storage.objectUser"]
    assert all("/objects/models/" not in w.inputs["condition"]["expression"] for w in writers), \
        f"the weights prefix must not be writable: {[w.name for w in writers]}"


API_KEY_CANARY = "CANARYapikeyCANARYapikey0123456789"


def test_api_key_reaches_vllm_only_through_a_secret():
    result = run_tutorial(api_key=pulumi.Output.secret(API_KEY_CANARY))
    secret = result.named("llama-api-key")
    data = secret.inputs["stringData"]
    assert is_wrapped_secret(data) or is_wrapped_secret(data["api_key"]), "llama-api-key: value not a Pulumi secret"
    env = {e["name"]: e for e in container(result)["env"]}
    assert env["VLLM_API_KEY"] == {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": "vllm-tpu-api-key", "key": "api_key"}}}, f"llama-deployment: {env['VLLM_API_KEY']}"
    for r in result.registrations:
        if r.name != "llama-api-key":
            assert API_KEY_CANARY not in json.dumps(unwrap_secrets(r.inputs)), f"{r.name} carries the API key"


def test_api_key_in_argv_or_plain_env_is_refused():
    assert "--api-key would put the key in the pod spec" in error_of(args=TUTORIAL_ARGS + ("--api-key=abc",))
    assert "API key must not be a plain env value" in error_of(env={"VLLM_API_KEY": "abc"})


def test_network_policy_admits_only_configured_sources_and_prometheus():
    result = run_tutorial(allowed_namespaces=("apps",), allowed_cidrs=("10.128.0.0/9",))
    spec = result.named("llama-network-policy").inputs["spec"]
    assert spec["podSelector"]["matchLabels"] == result.named("llama-deployment").inputs["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": 8000, "protocol": "TCP"}], f"llama-network-policy: {rule['ports']}"
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gmp-system"}}},
        {"ipBlock": {"cidr": "10.128.0.0/9"}},
    ], f"llama-network-policy: {rule['from']}"


def test_network_policy_defaults_closed_but_for_prometheus(tutorial):
    (rule,) = tutorial.named("llama-network-policy").inputs["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gmp-system"}}}], \
        f"llama-network-policy: {rule['from']}"


def test_bad_network_sources_are_refused():
    assert "allowed_cidrs: got '10.0.0.1/8'" in error_of(allowed_cidrs=("10.0.0.1/8",))
    assert "allowed_namespaces: got 'Apps'" in error_of(allowed_namespaces=("Apps",))


def test_pod_is_hardened_and_not_best_effort(tutorial):
    spec = pod_spec(tutorial)
    assert spec["automountServiceAccountToken"] is False, "llama-deployment mounts the service-account token"
    assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}, f"llama-deployment: {spec['securityContext']}"
    context = container(tutorial)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}, \
        f"llama-deployment: {context}"
    assert "runAsNonRoot" not in context, "llama-deployment: the vLLM TPU image runs as root; runAsNonRoot would stop it"
    requests = container(tutorial)["resources"]["requests"]
    assert requests["cpu"] == "45" and requests["memory"] == "360Gi", f"llama-deployment requests: {requests}"
    assert tutorial.named("llama-ksa").inputs["automountServiceAccountToken"] is False
    non_root = container(run_tutorial(run_as_user=1000))["securityContext"]
    assert non_root["runAsNonRoot"] is True and non_root["runAsUser"] == 1000, f"llama-deployment: {non_root}"


def test_requests_are_required():
    assert "the pod is BestEffort" in error_of(cpu_request=None)


def test_kubernetes_resources_use_the_cluster_provider(tutorial):
    provider = tutorial.named("gke-k8s")
    for r in tutorial.registrations:
        if r.type.startswith("kubernetes:"):
            assert r.provider.startswith(provider.urn + "::"), f"{r.name}: uses provider {r.provider!r}, not gke-k8s"


def test_labels(tutorial):
    labels = tutorial.named("llama-deployment").inputs["metadata"]["labels"]
    for key, value in {"app.kubernetes.io/name": "vllm-tpu", "app.kubernetes.io/instance": "llama",
                       "app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "llm-serving",
                       "environment": "dev"}.items():
        assert labels.get(key) == value, f"llama-deployment: label {key}={labels.get(key)!r}, expected {value!r}"


def test_an_invalid_label_is_refused_not_dropped():
    with pytest.raises(ValueError, match=r"labels: label key 'bad key!' is not a Kubernetes label key"):
        run_tutorial(labels={"environment": "dev", "bad key!": "x"})


def test_outputs(tutorial):
    out = {k: v.value for k, v in tutorial.outputs.items()}
    assert out["namespace"] == "llm-serving" and out["service_name"] == "vllm-tpu" and out["service_port"] == 8000, out
    assert out["in_cluster_url"] == "http://vllm-tpu.llm-serving.svc.cluster.local:8000", out
    assert out["port_forward_command"] == "kubectl -n llm-serving port-forward svc/vllm-tpu 8000:8000", out
    assert out["load_balancer_ip"] is None, f"load_balancer_ip should be unknown offline, got {out['load_balancer_ip']!r}"


def test_canary_token_never_plaintext(tutorial, tmp_path):
    found_wrapped = False
    for r in tutorial.registrations:
        masked = json.dumps(mask_secrets(r.inputs), default=str)
        assert CANARY not in masked, f"{r.name}: the HF token appears in plaintext in its inputs"
        if CANARY in json.dumps(unwrap_secrets(r.inputs), default=str):
            found_wrapped = True
            assert r.type == "kubernetes:core/v1:Secret", f"{r.name}: carries the HF token but is a {r.type}"
            assert is_wrapped_secret(r.inputs["stringData"]) or is_wrapped_secret(r.inputs["stringData"]["hf_api_token"]), \
                f"{r.name}: stringData is not a secret"
    assert found_wrapped, "the HF token reached no Secret at all"
    for key, output in tutorial.outputs.items():
        assert CANARY not in json.dumps(output.value, default=str), f"output {key} contains the HF token"
    for path in write_kubernetes_manifests(tutorial.registrations, tmp_path):
        assert CANARY not in path.read_text(), f"{path.name}: contains the HF token"


def test_no_token_without_hf_token():
    result = run_tutorial(hf_token=None)
    assert not result.of_type("kubernetes:core/v1:Secret"), "a Secret was created without a token"
    names = {e["name"] for e in container(result)["env"]}
    assert not names & {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}, f"llama-deployment: token env without a token: {names}"


def test_manifests_validate(tutorial, tmp_path):
    paths = write_kubernetes_manifests(tutorial.registrations, tmp_path)
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in paths}
    assert {"Namespace", "ServiceAccount", "Secret", "Deployment", "Service", "PodMonitoring",
            "HorizontalPodAutoscaler"} <= kinds, f"manifests written: {sorted(p.name for p in paths)}"
    skipped = []
    for path in paths:
        obj = yaml.safe_load(path.read_text())
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            skipped.append(obj["kind"])  # CRDs (PodMonitoring) have no schema in the validator
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{path.name}: {error}")
    assert skipped == ["PodMonitoring"], f"unexpected kinds without a schema: {skipped}"
    secret = next(p for p in paths if p.name.startswith("secret-"))
    assert yaml.safe_load(secret.read_text())["stringData"] == {"hf_api_token": "[secret]"}, secret.read_text()
    assert not any(p.name.startswith("provider") or "kubernetes" in p.name for p in paths), "the provider was written"


def test_gpu_family():
    pools = {"l4": NodePoolSpec("g2-standard-24", total_min_node_count=0, total_max_node_count=3)}
    result = run_tutorial(pools=pools, pool="l4", args=("--port=8000", "--tensor-parallel-size=2"),
                      image="docker.io/vllm/vllm-openai:v0.32.0", env={}, max_replicas=3)
    spec = pod_spec(result)
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}, f"llama-deployment: {spec['nodeSelector']}"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"], spec["tolerations"]
    assert container(result)["resources"]["limits"] == {"nvidia.com/gpu": "2"}, container(result)["resources"]


@pytest.mark.parametrize("overrides, needles", [
    (dict(max_replicas=3), ["max_replicas", "got 3", "at most 2", "max 2 nodes", "1 pods per node"]),
    (dict(image="docker.io/vllm/vllm-tpu:latest"), ["container.image", "latest"]),
    (dict(image="docker.io/vllm/vllm-tpu"), ["container.image", "without a tag"]),
    (dict(env={"HF_TOKEN": "x"}), ["container.env.HF_TOKEN", "hf_token"]),
    (dict(env={"TOKEN": CANARY}), ["container.env.TOKEN", "hf_token"]),
    (dict(port=70000), ["container.port", "got 70000"]),
    (dict(health_path="health"), ["container.health_path", "starting with /"]),
    (dict(autoscaling_metric="vllm:gpu_cache_usage_perc"), ["autoscaling_metric", "vllm:kv_cache_usage_perc"]),
    (dict(autoscaling_metric="vllm:avg_generation_throughput_toks_per_s"), ["autoscaling_metric", "vllm:num_requests_waiting"]),
    (dict(autoscaling_metric="vllm:kv_cache_usage_perc", autoscaling_target=10), ["autoscaling_target", "0-1"]),
    (dict(pods_per_node=3), ["pods_per_node", "got 3", "8 devices"]),
    (dict(min_replicas=2, max_replicas=1), ["max_replicas", "below min_replicas 2"]),
    (dict(gcsfuse_mount_options="implicit-dirs,app-name:x"), ["gcsfuse_mount_options", "app-name"]),
    (dict(model_bucket="gs://bucket"), ["model_bucket", "gs://"]),
    (dict(namespace="LLM"), ["namespace", "'LLM'"]),
])
def test_bad_args_rejected(overrides, needles):
    message = error_of(**overrides)
    assert "VllmGkeWorkload 'llama'" in message, message
    for needle in needles:
        assert needle in message, f"error for {overrides} lacks {needle!r}: {message}"


def test_multi_host_slice_rejected():
    pools = {"slice": NodePoolSpec("ct6e-standard-4t", tpu_topology="4x4", total_max_node_count=4)}
    message = error_of(pools=pools, pool="slice", max_replicas=1)
    assert "single-host" in message and "slice" in message, message


def test_placement_is_plain_data():
    placement = AcceleratorPlacement(pool="tpu", kind="tpu", gke_accelerator="tpu-v6e-slice", count_per_node=8,
                                     tpu_topology="2x4", hosts=1, max_nodes=2)

    def program():
        # The provider is never reached: Args are validated before any child is registered.
        VllmGkeWorkload("llama", workload_args(None, placement, max_replicas=5))

    with pytest.raises(ValueError) as caught:
        run_under_mocks(program)
    assert "got 5" in str(caught.value) and "at most 2" in str(caught.value), str(caught.value)


def test_xla_cache_warning(tutorial):
    assert any("VLLM_XLA_CACHE_PATH" in w for w in tutorial.warnings), f"no XLA cache warning: {tutorial.warnings}"


def test_manifest_file_names(tutorial, tmp_path):
    names = sorted(p.name for p in write_kubernetes_manifests(tutorial.registrations, tmp_path))
    for expected in ("deployment-llm-serving-vllm-tpu.yaml", "service-llm-serving-vllm-tpu.yaml",
                     "namespace-cluster-llm-serving.yaml", "podmonitoring-llm-serving-vllm-tpu.yaml",
                     "horizontalpodautoscaler-llm-serving-vllm-tpu.yaml", "secret-llm-serving-hf-secret.yaml"):
        assert expected in names, f"{expected} not written: {names}"
    assert all(Path(tmp_path, n).stat().st_size > 0 for n in names)


def test_plain_token_is_still_kept_secret(tmp_path):
    # A caller that forgets to mark the token secret still never writes it in plaintext.
    result = run_tutorial(hf_token=CANARY)
    secret = result.named("llama-hf-token")
    assert CANARY not in json.dumps(mask_secrets(secret.inputs), default=str), \
        "llama-hf-token: a plain hf_token was registered in plaintext"
    for path in write_kubernetes_manifests(result.registrations, tmp_path):
        assert CANARY not in path.read_text(), f"{path.name}: contains the HF token"


def test_two_workloads_share_a_namespace():
    pools = {"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_max_node_count=2)}

    def program():
        cluster = GkeCluster("gke", GkeClusterArgs(project="mock-project", location="us-east5-b",
                                                   cluster_name="llm-dev-gke", hardware=gke_hardware(),
                                                   node_pools=pools))
        for index, app in enumerate(("vllm-a", "vllm-b")):
            VllmGkeWorkload(app, workload_args(cluster.provider, cluster.placement("tpu"), app_name=app,
                                               service_account_name=None, hf_secret_name=None, max_replicas=1,
                                               create_namespace=index == 0))

    result = run_under_mocks(program)
    secrets = sorted(r.inputs["metadata"]["name"] for r in result.of_type("kubernetes:core/v1:Secret"))
    assert secrets == ["vllm-a-hf-token", "vllm-b-hf-token"], f"Secrets collide: {secrets}"
    assert len(result.of_type("kubernetes:core/v1:Namespace")) == 1, "the shared namespace was created twice"


def test_autopilot_placement():
    from components.gke_cluster import autopilot_placement

    placement = autopilot_placement("ct6e-standard-8t", "2x4", max_nodes=2, hardware=gke_hardware())
    assert (placement.gke_accelerator, placement.count_per_node, placement.hosts) == ("tpu-v6e-slice", 8, 1), placement
    with pytest.raises(ValueError) as caught:
        autopilot_placement("ct6e-standard-8t", "4x4", max_nodes=2, hardware=gke_hardware())
    assert "ct6e-standard-8t" in str(caught.value) and "forms 2x4" in str(caught.value), str(caught.value)


CALM = HpaBehavior(scale_up_window_seconds=450, scale_down_window_seconds=1800, scale_down_period_seconds=900)


def test_hpa_behaviour_is_rendered_and_absent_by_default(tutorial):
    assert "behavior" not in tutorial.named("llama-hpa").inputs["spec"], "llama-hpa: behaviour nobody asked for"
    behavior = run_tutorial(hpa_behavior=CALM).named("llama-hpa").inputs["spec"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 450, f"llama-hpa: {behavior}"
    assert behavior["scaleDown"] == {"stabilizationWindowSeconds": 1800, "selectPolicy": "Min",
                                     "policies": [{"type": "Pods", "value": 1, "periodSeconds": 900}]}, f"llama-hpa: {behavior}"


@pytest.mark.parametrize("behavior,needle", [
    (HpaBehavior(scale_up_window_seconds=3601, scale_down_window_seconds=0, scale_down_period_seconds=60),
     "scale_up_window_seconds: got 3601"),
    (HpaBehavior(scale_up_window_seconds=0, scale_down_window_seconds=60, scale_down_period_seconds=1801),
     "scale_down_period_seconds: got 1801"),
])
def test_hpa_behaviour_outside_the_api_limits_is_refused(behavior, needle):
    assert needle in error_of(hpa_behavior=behavior)


def test_drain_prestop_grace_and_pdb(tutorial):
    spec = pod_spec(tutorial)
    assert container(tutorial)["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "15"]}}}, \
        f"llama-deployment: lifecycle {container(tutorial).get('lifecycle')}"
    assert spec["terminationGracePeriodSeconds"] == 60, f"llama-deployment: grace {spec['terminationGracePeriodSeconds']}"
    pdb = tutorial.named("llama-pdb").inputs["spec"]
    assert pdb["selector"]["matchLabels"] == tutorial.named("llama-deployment").inputs["spec"]["selector"]["matchLabels"], \
        f"llama-pdb selects {pdb['selector']}"
    assert pdb["maxUnavailable"] == 1, f"llama-pdb: {pdb}"
    assert not run_tutorial(disruption_budget=False).of_type("kubernetes:policy/v1:PodDisruptionBudget"), \
        "a PodDisruptionBudget with disruption_budget=False"
    assert "termination_grace_period_seconds: got 10" in error_of(prestop_sleep_seconds=15,
                                                                  termination_grace_period_seconds=10)


def test_a_compute_class_pool_is_selected_by_class_and_may_exceed_the_pool():
    pools = {"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_max_node_count=1, compute_class="tpu")}
    result = run_tutorial(pools=pools, max_replicas=3)
    spec = pod_spec(result)
    assert spec["nodeSelector"] == {"cloud.google.com/compute-class": "tpu"}, f"llama-deployment: {spec['nodeSelector']}"
    assert {"key": "cloud.google.com/compute-class", "operator": "Equal", "value": "tpu", "effect": "NoSchedule"} in \
        spec["tolerations"], f"llama-deployment: tolerations {spec['tolerations']}"
    assert str(container(result)["resources"]["limits"]["google.com/tpu"]) == "8"
    # Without the class, three replicas cannot fit a one-node pool.
    plain = {"tpu": NodePoolSpec("ct6e-standard-8t", tpu_topology="2x4", total_max_node_count=1)}
    with pytest.raises(ValueError, match="holds at most 1"):
        run_tutorial(pools=plain, max_replicas=3)
