"""From parsed config to concrete deployments: catalog defaults filled in, commands rendered,
memory estimated, and every preview-time check run.

Nothing here talks to Google Cloud or registers a resource: ``resolve_stack`` is a pure
function of the stack config and the catalogs, so the offline plan, ``pulumi preview`` and the
tests all see the same answer. Problems are ``Check`` records; the program refuses to register
anything while one of them is an error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Optional

from components.cloudrun import CONCURRENCY_MAX as CLOUD_RUN_MAX_CONCURRENCY
from components.compile_cache import CompileCacheSync
from components.container import ServingContainer
from stacks import defaults
from stacks.catalog import CATALOG, ImageSpec, ModelSpec, hardware_defaults, parse_version
from stacks.checks import deployment_checks, digest_pinned
from stacks.coldstart import StartupBudget, compile_cache_key, compile_cache_prefix, startup_budget
from stacks.config import (
    AutoscalingMetric,
    DeploymentConfig,
    Environment,
    NodePoolConfig,
    Platform,
    StackConfig,
    WeightsSource,
    cluster_name,
    default_bucket_name,
    extra_arg_flag,
    memory_gib,
)
from stacks.findings import Check, Findings
from stacks.fit import DEFAULT_TYPICAL_REQUEST_TOKENS, FitEstimate, FitRequest, estimate, suggest_gpu_memory_utilization
from stacks.resolved import Hardware, ResolvedDeployment, ResolvedStack, Scaling, StackNames
from stacks.schema import NAMESPACE, did_you_mean
from stacks.vllm import VllmSettings, render_server

# The port the server listens on: the platform's convention (Cloud Run and Vertex AI send to
# 8080; on GKE vLLM keeps its own default, 8000).
PORTS = {Platform.VERTEX: 8080, Platform.CLOUDRUN: 8080, Platform.GKE: 8000}
# Where Vertex AI sends predict requests: the Model Garden server's route.
VERTEX_PREDICT_ROUTE = "/generate"
# Vertex AI's own label of where a deployment came from (tracking only).
VERTEX_DEPLOY_SOURCE = "pulumi"
GCS_MOUNT = "/models"
GKE_DATA_DIR = "/data"
BAKED_HF_HOME = "/model-cache"



# ---------------------------------------------------------------------------


def resolve_stack(stack: StackConfig) -> ResolvedStack:
    names = stack_names(stack)
    deployments: dict[str, ResolvedDeployment] = {}
    checks: list[Check] = []
    for name, deployment in stack.deployments.items():
        collector = Findings(name)
        resolved = _resolve(name, deployment, stack, names, collector)
        if resolved is not None:
            deployments[name] = resolved
            deployment_checks(resolved, stack, collector)
        elif not collector.failed:
            # Nothing vanishes: a deployment is either in the plan or in an error.
            collector.error(f"{NAMESPACE}:deployments.{name} could not be resolved and no reason was recorded; "
                            "this is a bug in the program, please report it with the stack file")
        checks.extend(collector.items)
    gke = stack.settings.gke
    if gke is not None and any(d.platform is Platform.GKE for d in deployments.values()) \
            and private_nodes(stack) and not gke.master_authorized_networks:
        stack_findings = Findings("")
        stack_findings.warn(f"the cluster's nodes are private, but its control plane answers any address (IAM still "
                            f"applies); set {NAMESPACE}:gke.masterAuthorizedNetworks to the ranges that run kubectl "
                            f"and pulumi (e.g. your CI runners)")
        checks.extend(stack_findings.items)
    support = Findings("")
    for ref, what, key in support_images(stack, deployments.values()):
        digest_pinned(ref, what, key, stack, support)
    checks.extend(support.items)
    return ResolvedStack(config=stack, names=names, deployments=deployments, checks=tuple(checks))


def support_images(stack: StackConfig, deployments: Iterable[ResolvedDeployment]) -> list[tuple[str, str, str]]:
    """(image, what it is, the key that sets it) of every image the stack runs besides the serving images."""
    from components.cloudrun import METRICS_SIDECAR_IMAGE
    from components.metrics_adapter import DEFAULT_ADAPTER_IMAGE

    platforms = {d.platform for d in deployments}
    images = []
    if Platform.GKE in platforms and stack.settings.gke is not None:
        images.append((stack.settings.gke.metrics_adapter_image or DEFAULT_ADAPTER_IMAGE,
                       "the custom-metrics adapter the HPAs read", f"{NAMESPACE}:gke.metricsAdapterImage"))
    if Platform.CLOUDRUN in platforms and stack.settings.monitoring.enabled:
        images.append((stack.settings.monitoring.cloud_run_sidecar_image or METRICS_SIDECAR_IMAGE,
                       "the Prometheus sidecar of the Cloud Run services", f"{NAMESPACE}:monitoring.cloudRunSidecarImage"))
    cached = [d for d in deployments if d.compile_cache is not None]
    if cached:
        d = cached[0]
        assert d.compile_cache is not None
        images.append((d.compile_cache.image, "the compile-cache sync containers (components/compile_cache.py)",
                       f"{d.key}.{'gke' if d.platform is Platform.GKE else 'cloudrun'}.compileCache"))
    return images


def private_nodes(stack: StackConfig) -> bool:
    """Private GKE nodes unless the stack says otherwise: on in prod, off elsewhere."""
    setting = stack.settings.gke.private_nodes if stack.settings.gke else None
    return setting if setting is not None else stack.environment is Environment.PROD


def stack_names(stack: StackConfig) -> StackNames:
    prefix = stack.prefix
    dockerhub_repository = f"{prefix}-dockerhub"
    gke = stack.settings.gke
    return StackNames(
        bucket=stack.settings.bucket.name or default_bucket_name(stack.project, prefix),
        images_repository=f"{prefix}-images",
        dockerhub_repository=dockerhub_repository,
        dockerhub_path=(f"{stack.region}-docker.pkg.dev/{stack.project}/{dockerhub_repository}"
                        if stack.settings.registry.docker_hub_remote else None),
        cluster=cluster_name(stack.settings) if gke is not None else None,
        hf_token_secret=defaults.HF_TOKEN_SECRET.format(prefix=prefix),
    )


def pulled_image(ref: str, platform: Platform, names: StackNames) -> str:
    """The image a Cloud Run or GKE deployment pulls: Docker Hub images through the stack's
    in-region remote repository (when it has one), anything else as given. Vertex AI pulls
    its images itself."""
    on_docker_hub = "/" in ref and "." not in ref.split("/", 1)[0]
    if platform is Platform.VERTEX or names.dockerhub_path is None or not on_docker_hub:
        return ref
    return f"{names.dockerhub_path}/{ref}"


def _resolve(name: str, d: DeploymentConfig, stack: StackConfig, names: StackNames,
             out: Findings) -> Optional[ResolvedDeployment]:
    key = f"{NAMESPACE}:deployments.{name}"
    model = _model(d, key, out)
    image = _image(d, stack, key, out)
    hardware = _hardware(d, stack, key, out)
    if model is None or image is None or hardware is None:
        return None

    v = d.vllm
    tp = v.tensor_parallel_size or hardware.devices
    util = v.gpu_memory_utilization or suggest_gpu_memory_utilization(hardware.accelerator)
    explicit_len = v.max_model_len is not None
    max_model_len = v.max_model_len or min(defaults.MAX_MODEL_LEN, model.max_context)
    max_num_seqs = v.max_num_seqs
    extra_flags = {extra_arg_flag(arg) for arg in v.extra_args}
    if max_num_seqs is None and _v0_vision(model, image):
        max_num_seqs = defaults.VISION_MAX_NUM_SEQS
    request = FitRequest(model=model, accelerator=hardware.accelerator, devices=tp,
                         gpu_memory_utilization=util, max_model_len=max_model_len, max_num_seqs=max_num_seqs,
                         max_num_batched_tokens=v.max_num_batched_tokens,
                         kv_cache_dtype_bytes=1.0 if v.kv_cache_dtype.startswith("fp8") else 2.0,
                         enforce_eager=v.enforce_eager, vllm_version=image.vllm_version,
                         typical_request_tokens=d.typical_request_tokens or DEFAULT_TYPICAL_REQUEST_TOKENS,
                         hybrid_kv_cache="--disable-hybrid-kv-cache-manager" not in extra_flags,
                         async_scheduling="--no-async-scheduling" not in extra_flags)
    if not explicit_len:
        # Unset max_model_len: the longest default that fits, so a default never fails to start.
        largest = estimate(request).largest_max_model_len
        if 256 <= largest < max_model_len:
            max_model_len = largest - largest % 256
            out.info(f"vllm.maxModelLen defaults to {max_model_len}, the longest context that fits "
                     f"{hardware.label}; set {key}.vllm.maxModelLen to choose another")
            request = _replace(request, max_model_len=max_model_len)
    fit = estimate(request)

    lora = d.lora
    model_arg, env, download_dir = _model_source(name, d, stack, names.bucket)
    streamed = model_arg.startswith("gs://")
    settings = VllmSettings(
        model=model_arg,
        served_model_name=v.served_model_name or d.model,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        tensor_parallel_size=tp,
        gpu_memory_utilization=util,
        max_num_batched_tokens=v.max_num_batched_tokens,
        dtype=v.dtype,
        kv_cache_dtype=v.kv_cache_dtype,
        enforce_eager=v.enforce_eager,
        enable_prefix_caching=v.enable_prefix_caching,
        trust_remote_code=v.trust_remote_code,
        swap_space=v.swap_space,
        disable_log_stats=v.disable_log_stats,
        chat_template=v.chat_template,
        model_type=v.model_type,
        revision=d.model_revision if model_arg == d.model else None,
        download_dir=download_dir,
        load_format="runai_streamer" if streamed else None,
        model_loader_extra_config=_streamer_config(d, hardware, tp) if streamed else None,
        enable_lora=bool(lora.adapters),
        max_loras=lora.max_loras if lora.adapters else None,
        max_cpu_loras=lora.max_cpu_loras if lora.adapters else None,
        max_lora_rank=lora.max_lora_rank if lora.adapters else None,
        limit_mm_per_prompt=dict(v.limit_mm_per_prompt),
        shutdown_timeout=_shutdown_timeout(d, image),
        extra_args=v.extra_args,
    )
    cache = _compile_cache(d, hardware, image, settings)
    if cache is not None:
        env = {**env, **dict(cache.env)}
    server = render_server(settings, image, port=PORTS[d.platform], env=env)
    container = ServingContainer(
        image=pulled_image(image.ref, d.platform, names),
        command=server.command,
        args=server.args,
        env=server.env,
        port=server.port,
        health_path=server.health_path,
        served_model_name=server.served_model_name,
        predict_route=VERTEX_PREDICT_ROUTE if d.platform is Platform.VERTEX else None,
    )
    scaling = _scaling(d, stack, image, hardware, fit)
    return ResolvedDeployment(name=name, config=d, model=model, image=image, hardware=hardware, vllm=settings,
                              container=container, rejected_flags=server.rejected_flags, scaling=scaling, fit=fit,
                              fit_request=request, startup=_startup(d, model, hardware), compile_cache=cache)


def _shutdown_timeout(d: DeploymentConfig, image: ImageSpec) -> Optional[int]:
    """GKE: vLLM drains for ``gke.drainSeconds`` on SIGTERM, when the pinned vLLM has ``--shutdown-timeout``."""
    if d.platform is not Platform.GKE or not CATALOG.flag_accepted("--shutdown-timeout", image.vllm_version, image.server):
        return None
    return d.gke_options.drain_seconds


def _v0_vision(model: ModelSpec, image: ImageSpec) -> bool:
    """Llama 3.2 Vision on the Model Garden server, which runs it on the V0 encoder-decoder runner."""
    return model.architecture == "MllamaForConditionalGeneration" and image.server == "model-garden"


def _replace(request: FitRequest, **changes) -> FitRequest:
    return dataclasses.replace(request, **changes)


def _model(d: DeploymentConfig, key: str, out: Findings) -> Optional[ModelSpec]:
    if d.custom_model is not None:
        c = d.custom_model
        return ModelSpec(
            hf_id=d.model, aliases=(), architecture=c.architecture, params_billion=c.params_billion,
            num_layers=c.num_layers, cross_attention_layers=c.cross_attention_layers, hidden_size=c.hidden_size,
            num_attention_heads=c.num_attention_heads, num_kv_heads=c.num_kv_heads, head_dim=c.head_dim,
            vocab_size=c.vocab_size, max_context=c.max_context, sliding_window=c.sliding_window,
            sliding_window_layers=c.sliding_window_layers, modality=c.modality, gated=c.gated,
            chat_template=c.chat_template, weight_bytes_per_param=c.weight_bytes_per_param,
            sources=(f"stack config {key}.customModel",), intermediate_size=c.intermediate_size,
        )
    model = CATALOG.model(d.model)
    if model is None:
        known = sorted(CATALOG.models)
        out.error(f"{key}.model: {d.model!r} is not in the model catalog{did_you_mean(d.model, known)}; "
                  f"describe it under {key}.customModel (architecture, params, layers, heads...) or use a catalog model")
    return model


def _image(d: DeploymentConfig, stack: StackConfig, key: str, out: Findings) -> Optional[ImageSpec]:
    if d.image is None:
        platform = d.platform.value
        if d.platform is Platform.GKE:
            pool = _node_pool(d, stack)
            machine = CATALOG.machine_type(pool.machine_type) if pool else None
            accelerator = CATALOG.accelerators.get(machine.accelerator) if machine else None
            platform = "gke-tpu" if accelerator is not None and accelerator.kind == "tpu" else "gke-gpu"
        return CATALOG.default_image(platform)
    known = CATALOG.image(d.image)
    if known is not None:
        return known
    version_text = d.vllm_version or _version_from_tag(d.image)
    if version_text is None:
        out.error(f"{key}.image: {d.image!r} is not in the image catalog and its tag names no vLLM version; "
                  f"set {key}.vllmVersion so flags and metrics can be checked")
        return None
    is_tpu = False
    if d.platform is Platform.GKE:
        pool = _node_pool(d, stack)
        machine = CATALOG.machine_type(pool.machine_type) if pool else None
        is_tpu = bool(machine and CATALOG.accelerators[machine.accelerator].kind == "tpu")
    return ImageSpec(
        ref=d.image, vllm_version=parse_version(version_text),
        server="model-garden" if "pytorch-vllm-serve" in d.image else "openai",
        accelerator_kind="tpu" if is_tpu else "gpu", architecture="x86", released="",
        default_for=(), sources=(f"stack config {key}.image",),
    )


def _version_from_tag(image: str) -> Optional[str]:
    tag = image.rsplit("/", 1)[-1].partition(":")[2].partition("@")[0]
    match = re.fullmatch(r"v?(\d+\.\d+\.\d+)", tag)
    return match.group(1) if match else None


def _node_pool(d: DeploymentConfig, stack: StackConfig) -> Optional[NodePoolConfig]:
    """The node pool a GKE deployment runs on; on Autopilot, the one GKE provisions from its hardware."""
    gke = stack.settings.gke
    if gke is None:
        return None
    if gke.autopilot:
        machine = d.hardware.machine_type
        if machine is None:
            return None
        topology = d.hardware.tpu_topology or next(
            (t.name for t in CATALOG.tpu_topologies.values() if t.machine_type == machine and t.hosts == 1), None)
        return NodePoolConfig(machine_type=machine, tpu_topology=topology, min_nodes=0,
                              max_nodes=d.scaling.max_replicas or 1)
    name = d.hardware.node_pool or (next(iter(gke.node_pools)) if len(gke.node_pools) == 1 else None)
    return gke.node_pools.get(name) if name else None


def _hardware(d: DeploymentConfig, stack: StackConfig, key: str, out: Findings) -> Optional[Hardware]:
    h = d.hardware
    if d.platform is Platform.VERTEX:
        preset = hardware_defaults()["vertex"]
        model = CATALOG.model(d.model)
        rec = preset["by_model"].get(model.hf_id if model else d.model, preset["fallback"])
        explicit = h.machine_type is not None
        machine_name = h.machine_type or rec["machine_type"]
        accel_name = h.accelerator_type or (None if explicit else rec["accelerator_type"])
        machine = CATALOG.machine_type(machine_name)
        if machine is None:
            out.error(f"{key}.hardware.machineType: {machine_name!r} is not a known accelerator machine type"
                      f"{did_you_mean(machine_name, list(CATALOG.machine_types))}")
            return None
        carried = CATALOG.accelerators[machine.accelerator]
        if carried.vertex_accelerator is None:
            out.error(f"{key}.hardware.machineType: {machine_name} carries {carried.key}, which Vertex AI does not "
                      "take as an accelerator type; choose a GPU machine type (g2, a2, a3)")
            return None
        accelerator = CATALOG.accelerator_by_vertex_name(accel_name) if accel_name else carried
        count = h.accelerator_count or (machine.accelerator_count if (explicit or h.accelerator_type) else rec["accelerator_count"])
        if accelerator is None:
            allowed = sorted(a.vertex_accelerator for a in CATALOG.accelerators.values() if a.vertex_accelerator)
            out.error(f"{key}.hardware.acceleratorType: {accel_name!r} is not a Vertex AI accelerator type; "
                      f"allowed: {', '.join(allowed)}{did_you_mean(str(accel_name), allowed)}")
            return None
        if accelerator.key != machine.accelerator or count != machine.accelerator_count:
            fitting = sorted(m.name for m in CATALOG.machine_types.values()
                             if m.accelerator == accelerator.key and m.accelerator_count == count)
            out.error(f"{key}.hardware: machine type {machine.name} carries {machine.accelerator_count} x "
                      f"{carried.vertex_accelerator}, not {count} x {accelerator.vertex_accelerator}; "
                      + (f"for {count} x {accelerator.vertex_accelerator} use {', '.join(fitting)}" if fitting
                         else f"no machine type carries {count} x {accelerator.vertex_accelerator}"))
            return None
        return Hardware(accelerator=accelerator, devices=count, machine_type=machine.name)

    if d.platform is Platform.CLOUDRUN:
        preset = hardware_defaults()["cloudrun"]
        gpu = h.accelerator_type or preset["gpu"]
        accelerator = CATALOG.accelerator_by_cloudrun_gpu(gpu)
        if accelerator is None:
            allowed = sorted(a.cloudrun_gpu for a in CATALOG.accelerators.values() if a.cloudrun_gpu)
            out.error(f"{key}.hardware.acceleratorType: {gpu!r} is not a Cloud Run GPU type; allowed: "
                      f"{', '.join(allowed)}{did_you_mean(gpu, allowed)}")
            return None
        if h.accelerator_count not in (None, 1):
            out.error(f"{key}.hardware.acceleratorCount: got {h.accelerator_count}; Cloud Run attaches one GPU per instance")
            return None
        cpu = h.cpu or str(max(int(preset["cpu"]), accelerator.cloudrun_min_cpu or 0))
        memory = h.memory or (preset["memory"] if memory_gib(preset["memory"]) >= (accelerator.cloudrun_min_memory_gib or 0)
                              else f"{accelerator.cloudrun_min_memory_gib}Gi")
        ok = True  # cpu and memory against the GPU's limits: checked with the config (stacks.config)
        if h.machine_type or h.node_pool:
            out.error(f"{key}.hardware: machineType and nodePool do not apply to Cloud Run; remove them")
            ok = False
        return Hardware(accelerator=accelerator, devices=1, cpu=cpu, memory=memory) if ok else None

    pool = _node_pool(d, stack)
    if pool is None:
        return None  # the config layer already reported the missing cluster, pool or machine type
    gke = stack.settings.gke
    autopilot = gke is not None and gke.autopilot
    pool_name = "autopilot" if autopilot or gke is None else d.hardware.node_pool or next(iter(gke.node_pools))
    machine = CATALOG.machine_type(pool.machine_type)
    pool_key = f"{key}.hardware" if autopilot else f"{NAMESPACE}:gke.nodePools.{pool_name}"
    if machine is None:
        out.error(f"{pool_key}.machineType: {pool.machine_type!r} is not a known accelerator machine type"
                  f"{did_you_mean(pool.machine_type, list(CATALOG.machine_types))}")
        return None
    accelerator = CATALOG.accelerators[machine.accelerator]
    topology = None
    devices = pool.gpu_count or machine.accelerator_count
    if accelerator.kind == "tpu":
        topology = pool.tpu_topology
        spec = CATALOG.tpu_topologies.get(topology or "")
        if spec is None:
            allowed = sorted(CATALOG.tpu_topologies)
            out.error(f"{pool_key}.tpuTopology: got {topology!r}; {machine.name} needs one of {', '.join(allowed)}")
            return None
        if spec.hosts != 1:
            out.error(f"{pool_key}.tpuTopology: {topology} spans {spec.hosts} hosts; vLLM on GKE TPU serves from "
                      "a single host (use 2x4 on ct6e-standard-8t, 2x2 on ct6e-standard-4t, 1x1 on ct6e-standard-1t)")
            return None
        if spec.machine_type != machine.name or spec.chips != machine.accelerator_count:
            agreeing = [t.name for t in CATALOG.tpu_topologies.values() if t.machine_type == machine.name and t.hosts == 1]
            out.error(f"{pool_key}: machine type {machine.name} has {machine.accelerator_count} chips but topology "
                      f"{topology} needs {spec.chips} chips on {spec.machine_type}; with {machine.name} use "
                      f"tpuTopology {', '.join(agreeing) or '(none)'}")
            return None
        devices = spec.chips
    elif pool.tpu_topology:
        out.error(f"{pool_key}.tpuTopology: {machine.name} is a GPU machine type; remove tpuTopology")
        return None
    elif pool.gpu_count and pool.gpu_count != machine.accelerator_count:
        out.error(f"{pool_key}.gpuCount: {machine.name} carries {machine.accelerator_count} GPUs, not {pool.gpu_count}")
        return None
    return Hardware(accelerator=accelerator, devices=devices, machine_type=machine.name,
                    node_pool=pool_name, tpu_topology=topology)


def _streamer_config(d: DeploymentConfig, hardware: Hardware, tensor_parallel: int) -> dict[str, object]:
    """The Run:ai streamer's settings: its concurrency always; on Cloud Run a CPU buffer bounded by the
    instance's memory; on GPUs with tensor parallelism, each rank streaming its own part."""
    config: dict[str, object] = {"concurrency": defaults.STREAMER_CONCURRENCY}
    if d.platform is Platform.CLOUDRUN and hardware.memory:
        config["memory_limit"] = int(memory_gib(hardware.memory) * defaults.STREAMER_CLOUDRUN_MEMORY_SHARE * 2**30)
    if hardware.accelerator.kind == "gpu" and tensor_parallel > 1:
        config["distributed"] = True
    return config


def _model_source(name: str, d: DeploymentConfig, stack: StackConfig, bucket: str) -> tuple[str, dict, Optional[str]]:
    """What --model points at, the plain environment, and vLLM's download dir, per platform.

    Cloud Run (default) and GKE read the weights-copy job's copy from the bucket with vLLM's Run:ai
    model streamer (``gs://``; the serving identity has read access to that prefix only and no
    token). Chosen over a read-only GCS FUSE mount on both accelerators: the streamer reads
    tensors concurrently straight into memory, with no FUSE sidecar or file cache to size, and it
    is what Google's llm-d GPU overlays use (accelerated-platforms, ``--model=gs://...
    --load-format=runai_streamer``); on TPU, a Hugging Face cache on GCS FUSE is the slow path
    reported in vllm-project/vllm issue #23115, and the TPU backend implements the streamer
    (vllm-project/tpu-inference PR #955)."""
    if d.platform is Platform.VERTEX:
        return d.model, {"MODEL_ID": d.model, "DEPLOY_SOURCE": VERTEX_DEPLOY_SOURCE}, None
    if d.platform is Platform.CLOUDRUN:
        weights = d.cloudrun_options.weights
        if weights is WeightsSource.IMAGE:
            # Weights baked into the image's Hugging Face cache; never reach out at run time.
            return d.model, {"HF_HOME": BAKED_HF_HOME, "HF_HUB_OFFLINE": "1"}, None
        if weights is WeightsSource.GCS:
            return f"{GCS_MOUNT}/{gcs_prefix(d)}", {"HF_HUB_OFFLINE": "1"}, None
        if weights is WeightsSource.STREAM:
            return f"gs://{bucket}/{gcs_prefix(d)}", {"HF_HUB_OFFLINE": "1"}, None
        return d.model, {}, None
    # The TPU XLA cache and the GPU torch.compile cache live in the keyed compile cache (_compile_cache).
    env = {"HF_HUB_OFFLINE": "1"}  # everything comes from the bucket copy; the pod holds no token
    return f"gs://{bucket}/{gcs_prefix(d)}", env, None


# Where the server compiles on a GKE node's disk (an emptyDir the sync containers share).
COMPILE_CACHE_DIR = "/compile-cache"


def _compile_cache(d: DeploymentConfig, hardware: Hardware, image: ImageSpec,
                   settings: VllmSettings) -> Optional[CompileCacheSync]:
    """GKE and Cloud Run: the keyed compile cache a replica restores and saves (components/compile_cache.py)."""
    wanted = {Platform.GKE: lambda: d.gke_options.compile_cache, Platform.CLOUDRUN: lambda: d.cloudrun_options.compile_cache}
    if d.platform not in wanted or not wanted[d.platform]():
        return None
    key = compile_cache_key(model=d.model, revision=d.model_revision, image=image.ref,
                            accelerator=hardware.accelerator.key, devices=hardware.devices,
                            tpu_topology=hardware.tpu_topology, settings=settings)
    env: tuple[tuple[str, str], ...]
    if hardware.accelerator.kind == "tpu":
        # The TPU backend's persistent compilation cache (vllm/envs.py VLLM_XLA_CACHE_PATH).
        env = (("VLLM_XLA_CACHE_PATH", f"{COMPILE_CACHE_DIR}/xla"), ("VLLM_CACHE_ROOT", f"{COMPILE_CACHE_DIR}/vllm"))
    else:
        # torch.compile artifacts land in $VLLM_CACHE_ROOT/torch_compile_cache (vllm/envs.py).
        env = (("VLLM_CACHE_ROOT", f"{COMPILE_CACHE_DIR}/vllm"),)
    return CompileCacheSync(prefix=compile_cache_prefix(key), local_dir=COMPILE_CACHE_DIR, env=env)


def _startup(d: DeploymentConfig, model: ModelSpec, hardware: Hardware) -> StartupBudget:
    """The startup probe budget (Vertex AI: the deployment timeout) from the weights' size."""
    weight_bytes = model.params_billion * 1e9 * model.weight_bytes_per_param
    kind = hardware.accelerator.kind
    if d.platform is Platform.VERTEX:
        return startup_budget("vertex", kind, weight_bytes, d.vertex_options.deployment_timeout_seconds,
                              "vertex.deploymentTimeoutSeconds")
    if d.platform is Platform.CLOUDRUN:
        return startup_budget("cloudrun", kind, weight_bytes, d.cloudrun_options.startup_timeout_seconds,
                              "cloudrun.startupTimeoutSeconds")
    return startup_budget(f"gke-{kind}", kind, weight_bytes, d.gke_options.startup_timeout_seconds,
                          "gke.startupTimeoutSeconds")


def gcs_prefix(d: DeploymentConfig) -> str:
    """Object prefix of a deployment's weights in the bucket: a hand-placed Cloud Run prefix, or where the
    weights-copy job puts the pinned revision."""
    if d.platform is Platform.CLOUDRUN and d.cloudrun_options.gcs_prefix:
        return d.cloudrun_options.gcs_prefix.strip("/")
    return defaults.WEIGHTS_PREFIX.format(model=d.model,
                                          revision=d.model_revision or defaults.WEIGHTS_UNPINNED_REVISION)


def _scaling(d: DeploymentConfig, stack: StackConfig, image: ImageSpec, hardware: Hardware,
             fit: FitEstimate) -> Scaling:
    s = d.scaling
    if d.platform is Platform.CLOUDRUN:
        # One request per sequence vLLM batches (its own default unless set), the rest queue inside vLLM,
        # not in Cloud Run's front end; Cloud Run takes at most CLOUD_RUN_MAX_CONCURRENCY.
        concurrency = d.cloudrun_options.max_concurrency or min(CLOUD_RUN_MAX_CONCURRENCY, fit.max_num_seqs)
        minimum = s.min_replicas if s.min_replicas is not None else defaults.CLOUDRUN_MIN_REPLICAS
        return Scaling(minimum, s.max_replicas or defaults.CLOUDRUN_MAX_REPLICAS, None, 0.0,
                       max_concurrency=concurrency)
    if d.platform is Platform.VERTEX:
        minimum = max(defaults.VERTEX_REPLICA_FLOOR, s.min_replicas if s.min_replicas is not None else defaults.MIN_REPLICAS)
        return Scaling(minimum, s.max_replicas or defaults.MAX_REPLICAS, None,
                       s.target or defaults.DUTY_CYCLE_TARGET_PERCENT)
    if s.metric is AutoscalingMetric.KV_CACHE_USAGE:
        metric = ("vllm:kv_cache_usage_perc" if CATALOG.metric_exported("vllm:kv_cache_usage_perc", image.vllm_version)
                  else "vllm:gpu_cache_usage_perc")
        target = s.target if s.target is not None else defaults.KV_CACHE_USAGE_TARGET
    else:
        metric = "vllm:num_requests_waiting"
        target = s.target if s.target is not None else defaults.WAITING_REQUESTS_TARGET
    floor = 0 if d.gke_options.scale_to_zero else defaults.MIN_REPLICAS
    minimum = s.min_replicas if s.min_replicas is not None else floor
    return Scaling(minimum, s.max_replicas or max(defaults.MAX_REPLICAS, minimum), metric, target)


# ---------------------------------------------------------------------------
# GKE pod sizing and bucket layout.

def gke_pod_requests(d: ResolvedDeployment) -> tuple[str, str]:
    """(cpu, memory) requests of a GKE vLLM pod from the node pool's machine facts."""
    machine = CATALOG.machine_type(d.hardware.machine_type or "")
    if machine is None:
        raise ValueError(f"{d.key}: no machine facts for {d.hardware.machine_type!r}")
    share = d.hardware.devices / machine.accelerator_count * defaults.GKE_POD_REQUEST_SHARE
    cpu = max(1, int(machine.vcpus * share))
    memory = max(1, int(machine.memory_gib * share))
    return str(cpu), f"{memory}Gi"


def gke_bucket_prefixes(d: ResolvedDeployment) -> tuple[str, ...]:
    """Object prefixes a GKE deployment writes: its keyed compile cache only (weights are read from the
    copy, through read_prefixes)."""
    prefixes = []
    if d.compile_cache is not None:
        prefixes.append(d.compile_cache.prefix)
    return tuple(prefixes)

