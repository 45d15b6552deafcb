"""Preview-time checks: a deployment that cannot fit or cannot serve fails before anything is
created, with the numbers and the fix, instead of an hour into a deploy.

Each check reproduces a failure the tutorials' debugging sections show only after deploying:
CUDA out of memory with max_num_seqs 256 on a vision model, "the model's max seq len is larger
than the maximum number of tokens that can be stored in KV cache", a gated model without a
token, a missing chat template; plus the version traps the catalog records with their sources (flags
removed from vLLM, metrics renamed, Llama 3.2 Vision gone from vLLM 0.11) and the TPU backend's model
support matrix.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from components.lora import is_hub_adapter
from stacks.catalog import CATALOG
from stacks.catalog.capacity import CAPACITY_TYPES
from stacks.catalog.locations import locations
from stacks.config import Environment, Platform, StackConfig, WeightsSource
from stacks.fit import estimate, largest_fitting_max_num_seqs
from stacks.monitoring import monitoring_checks
from stacks.resolved import wake_timings

if TYPE_CHECKING:
    from stacks.findings import Findings
    from stacks.resolved import ResolvedDeployment

GIB = 1024**3
MLLAMA_LAST_VERSION = (0, 10, 99)  # the encoder-decoder runner Mllama needs left vLLM in 0.11 (PR #24907)
# Vertex AI, "vLLM serving for text-only and multimodal language models on Cloud GPUs": the
# `lora_id` parameter ("dynamic LoRA does not work with multimodal models") and the debugging
# section's common issues 2 (Hugging Face token) and 3 (chat template).
VERTEX_TUTORIAL = "https://cloud.google.com/vertex-ai/generative-ai/docs/open-models/vllm/use-vllm"
# vLLM applies adapters only to models implementing SupportsLoRA; the LoRA column lists them.
VLLM_LORA_DOCS = "https://docs.vllm.ai/en/latest/features/lora.html"
VLLM_SUPPORTED_MODELS = "https://docs.vllm.ai/en/latest/models/supported_models.html"
# The Hub's access check for one repository with a token: 200 when the token may read it
# (huggingface_hub's `auth_check` calls the same route).
HUB_AUTH_CHECK = "https://huggingface.co/api/models/{model}/auth-check"


def deployment_checks(d: ResolvedDeployment, stack: StackConfig, out: Findings) -> None:
    key = d.key
    fit = d.fit
    v = d.vllm
    model = d.model
    version = ".".join(map(str, d.image.vllm_version))

    # Memory: weights and the profiling run, then KV cache against max_model_len (vLLM's own start-up checks).
    if not fit.weights_fit:
        out.error(_memory_refusal(d))
    elif not fit.context_fits and v.max_model_len <= model.max_context:
        out.error(
            f"max_model_len {v.max_model_len} is larger than the {fit.kv_capacity_tokens} tokens the KV cache "
            f"can hold on {d.hardware.label} ({fit.kv_cache_gib_per_device:.2f} GiB per device); the largest "
            f"max_model_len that fits is {fit.largest_max_model_len}. Set {key}.vllm.maxModelLen to at most "
            f"{fit.largest_max_model_len}, raise gpuMemoryUtilization, or add accelerators")

    if v.max_model_len > model.max_context:
        out.error(f"max_model_len {v.max_model_len} exceeds {model.hf_id}'s context of {model.max_context} tokens; "
                  f"set {key}.vllm.maxModelLen to {model.max_context} or less")

    # Tensor parallelism: vLLM shards attention heads evenly over the devices it is given.
    tp = v.tensor_parallel_size
    if model.num_attention_heads % tp:
        divisors = [n for n in (1, 2, 4, 8, 16) if model.num_attention_heads % n == 0]
        out.error(f"tensor_parallel_size {tp} does not divide {model.hf_id}'s {model.num_attention_heads} attention "
                  f"heads; use one of {divisors}")
    if tp != d.hardware.devices:
        out.error(f"tensor_parallel_size {tp} differs from the {d.hardware.devices} accelerators per replica on "
                  f"{d.hardware.label}; remove {key}.vllm.tensorParallelSize (it defaults to the accelerator count) "
                  "or change the hardware")

    # Access to the weights.
    if model.gated and not stack.has_hf_token and not _weights_in_bucket(d):
        out.error(f"{model.hf_id} is a gated Hugging Face model and the stack has no token; accept the licence on "
                  "Hugging Face, then `pulumi config set --secret llm-serving:hfToken <token>` (or set "
                  "llm-serving:hfTokenSecret to an existing Secret Manager secret)")
    elif model.gated and not _weights_in_bucket(d) and not _adopted(d):
        _token_access_hint(d, stack, out)

    _lora_checks(d, out)
    _startup_budget_checks(d, out)
    if _adopted(d):
        _adopted_endpoint_checks(d, stack, out)

    # Version traps.
    if model.architecture == "MllamaForConditionalGeneration" and d.image.vllm_version > MLLAMA_LAST_VERSION:
        out.error(f"{model.hf_id} (Llama 3.2 Vision) cannot be served by vLLM {version}: its encoder-decoder "
                  "runner was removed in vLLM 0.11; pin an image with vLLM 0.10 or older (the default Vertex AI "
                  "Model Garden image has 0.9.2) or choose another vision model")
    for flag in d.rejected_flags:
        spec = CATALOG.flags.get(flag)
        why = (f"removed in vLLM {'.'.join(map(str, spec.removed_in))}" if spec and spec.removed_in
               else f"not accepted by the {d.image.server} server")
        out.error(f"{flag} is {why}, and {d.image.ref} runs vLLM {version}; remove it from {key}.vllm "
                  f"(a container started with it would exit with 'unrecognized arguments')")

    # Autoscaling must read a metric the server exports.
    if d.platform is Platform.GKE and d.scaling.metric:
        if v.disable_log_stats:
            out.error(f"the HPA scales on {d.scaling.metric}, but {key}.vllm.disableLogStats is true, which stops "
                      "vLLM from filling its Prometheus metrics; the HPA would never scale. Set disableLogStats to false")
        if not CATALOG.metric_exported(d.scaling.metric, d.image.vllm_version):
            out.error(f"the HPA scales on {d.scaling.metric}, which vLLM {version} does not export; use "
                      f"{key}.scaling.metric num_requests_waiting or kv_cache_usage")

    # Serving quality and cost warnings.
    if v.kv_cache_dtype.startswith("fp8"):
        _fp8_kv_cache(d, out)
    if d.hardware.accelerator.key == "tpu-v6e":
        _tpu_support(d, out)
    # Every server this project runs answers chat completions (the Model Garden server included:
    # the tutorial calls it), so a tokenizer without a template breaks chat on every platform.
    if not model.chat_template and not v.chat_template:
        out.warn(f"{model.hf_id} is a base model without a chat template in its tokenizer: /v1/chat/completions on this "
                 "endpoint will fail, since transformers 4.44 no longer supplies a default template (the Vertex AI "
                 f"vLLM tutorial's common issue 3, {VERTEX_TUTORIAL}). Serve an instruct variant, or set "
                 f"{key}.vllm.chatTemplate to a Jinja template (inline or a file in the image); it is passed as "
                 "--chat-template")
    if v.enforce_eager:
        out.warn("enforce_eager disables CUDA graphs: about 14% less output throughput (measured on an H200, "
                 f"vLLM 0.25, Llama-3.1-8B shape). Set {key}.vllm.enforceEager to false unless debugging")
    if any(arg.split("=")[0] == "--enable-lora" for arg in v.extra_args) and not v.enable_lora:
        out.warn("--enable-lora without adapters costs about 30% of output throughput (measured); configure "
                 f"{key}.lora.adapters or drop the flag")
    if v.disable_log_stats and d.platform is not Platform.GKE:
        out.warn("disable_log_stats empties vLLM's Prometheus metrics; dashboards and autoscalers see nothing")
    if stack.environment is Environment.DEV and d.scaling.min_replicas > 0:
        idle = f"{d.scaling.min_replicas * d.hardware.devices} x {d.hardware.accelerator.key}"
        if d.platform is Platform.CLOUDRUN:
            out.warn(f"min instances {d.scaling.min_replicas} in dev keeps {idle} billed while idle; set "
                     f"{key}.scaling.minReplicas to 0 to scale to zero")
        elif not _adopted(d):  # an adopted endpoint's cost is its owner's; removing the deployment keeps it
            # Vertex AI endpoints and the GKE HPA keep at least one replica: say what idling costs.
            out.info(f"{d.platform.value} keeps {idle} running while idle in dev; undeploy (remove the deployment) when unused")
    if d.platform is Platform.GKE:
        _gke_capacity(d, stack, out)
        if d.config.gke_options.scale_to_zero:
            _scale_to_zero(d, stack, out)
        if d.vllm.shutdown_timeout is None:
            out.warn(f"vLLM {version} has no --shutdown-timeout (stacks/catalog/data/vllm_flags.yaml): a stopping replica "
                     f"aborts its running requests on SIGTERM after the preStop sleep; {d.key}.gke.drainSeconds has no "
                     f"effect. Pin a vLLM with the flag ({_since('--shutdown-timeout')} or later) to drain")
        if not d.config.gke_options.api_key:
            out.warn(f"{key}.gke.apiKey is false: any client the NetworkPolicy admits can call the model without a key")
    monitoring_checks(d, stack, out)
    if d.platform is Platform.VERTEX:
        _vertex_location(d, stack, out)
    _supply_chain(d, stack, out)


def _since(flag: str) -> str:
    spec = CATALOG.flags.get(flag)
    return ".".join(map(str, spec.since)) if spec is not None and spec.since is not None else "a newer release"


def _vertex_location(d: ResolvedDeployment, stack: StackConfig, out: Findings) -> None:
    """Vertex AI serves in some regions, and offers each accelerator in fewer (data/locations.yaml)."""
    region = locations().regions.get(stack.region)
    accelerator = d.hardware.accelerator.vertex_accelerator
    if region is None:
        return  # the config already refused an unknown region
    if not region.vertex:
        out.error(f"Vertex AI does not serve in {stack.region}; choose a Vertex AI region for gcp:region, e.g. "
                  f"{', '.join(locations().vertex_regions(accelerator)[:4])}")
    elif region.vertex_gpus is not None and accelerator not in region.vertex_gpus:
        offering = ", ".join(locations().vertex_regions(accelerator)) or "(none recorded)"
        out.error(f"Vertex AI offers no {accelerator} in {stack.region} ({d.hardware.label}); regions with it: "
                  f"{offering}. Change gcp:region or {d.key}.hardware")


def _memory_refusal(d: ResolvedDeployment) -> str:
    """Weights plus the profiling run exceed what vLLM may use: the numbers and the fix."""
    fit, v, key = d.fit, d.vllm, d.key
    message = (
        f"{d.model.hf_id} needs about {fit.needed_gib_per_device:.1f} GiB per device ({fit.weights_gib_per_device:.1f} GiB "
        f"of weights, {fit.overhead_gib_per_device:.1f} GiB for vLLM's profiling run and runtime, and one "
        f"{v.max_model_len}-token sequence), but vLLM may use {fit.budget_gib_per_device:.1f} GiB of each "
        f"{d.hardware.accelerator.key} ({v.gpu_memory_utilization} x device memory)")
    if fit.encoder_gib_per_device * 2 > fit.overhead_gib_per_device:
        message += (f"; {fit.encoder_gib_per_device:.1f} GiB of it is the vision encoder encoding one image for each "
                    f"of max_num_seqs {fit.max_num_seqs} dummy sequences")
        if d.fit_request is not None:
            seqs = largest_fitting_max_num_seqs(d.fit_request)
            if seqs:
                return message + f". Set {key}.vllm.maxNumSeqs to at most {seqs}, or use larger accelerators"
    larger = _smallest_fitting_machine(d)
    if larger is not None:
        name, count, tokens = larger
        return message + (f". {name} ({count} x {d.hardware.accelerator.key}, tensor parallel {count}) fits "
                          f"{v.max_model_len} tokens with about {tokens:,} KV tokens: set {key}.hardware to it, or use "
                          "larger accelerators or a quantized checkpoint")
    return message + f". Use more or larger accelerators ({key}.hardware) or a quantized checkpoint"


def _smallest_fitting_machine(d: ResolvedDeployment) -> tuple[str, int, int] | None:
    """The catalog machine with the fewest of the same accelerators, more than now, on which the deployment fits.

    Only machines whose accelerator count divides the model's KV heads (tensor parallelism must) are tried.
    Returns (machine type, accelerator count, estimated KV tokens), or None.
    """
    if d.fit_request is None or d.platform == Platform.CLOUDRUN:
        return None  # Cloud Run gives one GPU per instance
    candidates = sorted((m.accelerator_count, m.name) for m in CATALOG.machine_types.values()
                        if m.accelerator == d.hardware.accelerator.key and m.accelerator_count > d.hardware.devices
                        and d.model.num_kv_heads % m.accelerator_count == 0)
    for count, name in candidates:
        fit = estimate(dataclasses.replace(d.fit_request, devices=count))
        if fit.context_fits:
            return name, count, fit.kv_capacity_tokens
    return None


def _fp8_kv_cache(d: ResolvedDeployment, out: Findings) -> None:
    support = CATALOG.fp8_kv_cache
    acc = d.hardware.accelerator.key
    version = ".".join(map(str, d.image.vllm_version))
    if acc not in support.accelerators:
        out.error(f"{d.key}.vllm.kvCacheDtype {d.vllm.kv_cache_dtype}: FP8 KV cache is not known to work on {acc}; "
                  f"set it to auto (supported: {', '.join(support.accelerators)})")
    elif d.image.vllm_version < support.since:
        out.error(f"{d.key}.vllm.kvCacheDtype {d.vllm.kv_cache_dtype}: vLLM {version} predates the FP8 KV cache "
                  f"({'.'.join(map(str, support.since))}); pin a newer image or set it to auto")
    else:
        note = support.notes.get(acc)
        out.info(f"FP8 KV cache: {d.fit.kv_capacity_tokens} tokens instead of about {d.fit.kv_capacity_tokens // 2} in bf16; "
                 f"{support.caveat}" + (f"; {note}" if note else ""))


def _tpu_support(d: ResolvedDeployment, out: Findings) -> None:
    facts = CATALOG.tpu_v6e
    status = facts.support_matrix.get(d.model.hf_id)
    source = facts.support_matrix_sources[0]
    if status == "passing":
        return
    passing = sorted(m for m, s in facts.support_matrix.items() if s == "passing")
    if status == "failing":
        out.warn(f"{d.model.hf_id} fails a test in the TPU backend's support matrix for v6e ({source}); "
                 f"the models passing every test are {', '.join(passing)}")
    elif status == "untested":
        out.warn(f"{d.model.hf_id} is listed as untested in the TPU backend's support matrix for v6e ({source}); "
                 f"the models passing every test are {', '.join(passing)}")
    else:
        out.warn(f"{d.model.hf_id} is not in the TPU backend's support matrix for v6e, so it is untested there "
                 f"({source}); tested models: {', '.join(passing)}")


def _token_access_hint(d: ResolvedDeployment, stack: StackConfig, out: Findings) -> None:
    """How to check, before deploying, that the token may read a gated model (not readable offline)."""
    location = stack.token_secret_location()
    if location is None:
        return
    project, secret = location
    command = (f"gcloud secrets versions access latest --secret={secret} --project={project} "
               "| sed 's/^/Authorization: Bearer /' "
               f"| curl -sSf -o /dev/null -H @- {HUB_AUTH_CHECK.format(model=d.model.hf_id)} "
               f"&& echo 'the token can read {d.model.hf_id}'")
    out.info(f"{d.model.hf_id} is gated, and whether the token may read it cannot be checked offline (without "
             "access the deployment fails an hour in with 'Cannot access gated repo': the Vertex AI vLLM tutorial's "
             f"common issue 2, {VERTEX_TUTORIAL}). Check it before deploying (HTTP 403: accept the licence on the "
             f"model page with the token's account, or grant the token gated-repository access): {command}")


def _lora_checks(d: ResolvedDeployment, out: Findings) -> None:
    adapters = d.config.lora.adapters
    if not adapters:
        return
    names = ", ".join(sorted(adapters))
    if d.model.modality == "vision":
        if d.platform is Platform.VERTEX:
            out.error(f"LoRA adapters ({names}) on vision model {d.model.hf_id}: dynamic LoRA (a request's lora_id) "
                      f"does not work with multimodal models on Vertex AI ({VERTEX_TUTORIAL}, the lora_id parameter), "
                      f"and vLLM applies adapters only to models that support LoRA ({VLLM_LORA_DOCS}). Remove "
                      f"{d.key}.lora.adapters or serve a text model")
        else:
            out.warn(f"LoRA adapters ({names}) on vision model {d.model.hf_id}: vLLM serves LoRA only for the "
                     f"architectures marked in the LoRA column of {VLLM_SUPPORTED_MODELS}; check "
                     f"{d.model.architecture} for vLLM {'.'.join(map(str, d.image.vllm_version))} before deploying")
    if d.platform is not Platform.VERTEX:
        # Only Vertex AI's container loads an adapter per request from its path (lora_id); vLLM's
        # own server needs adapters named at start-up (--lora-modules) or loaded through its API.
        out.warn(f"LoRA adapters ({names}) on {d.platform.value}: the server starts with --enable-lora but loads "
                 "none of them, and the outputs carry no adapter paths; load them at start-up with --lora-modules "
                 f"in {d.key}.vllm.extraArgs, or remove {d.key}.lora.adapters to get the throughput back")
    from_hub = sorted(name for name, source in adapters.items() if is_hub_adapter(source))
    if from_hub:
        out.warn(f"LoRA adapters {', '.join(from_hub)} come from the Hugging Face Hub: a request's lora_id names a "
                 "repository, not a revision, so what serves can change under the deployment. Copy them into the "
                 f"model bucket and set {d.key}.lora.adapters.<name> to their object prefix to pin them")


def _adopted_endpoint_checks(d: ResolvedDeployment, stack: StackConfig, out: Findings) -> None:
    existing = d.config.vertex_options.existing_endpoint or ""
    where = f"{d.key}.vertex.existingEndpoint"
    parts = existing.split("/")
    if len(parts) == 6:
        project, region = parts[1], parts[3]
        if region != stack.region:
            out.error(f"{where} is in region {region}, but the stack deploys to {stack.region}; adopt an endpoint in "
                      f"{stack.region} or give the id alone")
        if project != stack.project and not project.isdigit():
            out.error(f"{where} is in project {project}, but the stack's project is {stack.project}; adopt an "
                      "endpoint of this project")
    lora = (" Its adapters are only served if it was deployed with --enable-lora, which cannot be seen from here."
            if d.config.lora.adapters else "")
    out.info(f"adopts endpoint {existing}: the stack exports its URLs and grants what it reads, but never deploys "
             "to, changes or deletes it (AiEndpointWithModelGardenDeployment supports no `pulumi import`); the "
             f"settings under {d.key} describe it to these checks and reach no container.{lora} Remove {where} to "
             "let the stack deploy its own endpoint (a new id)")


def _adopted(d: ResolvedDeployment) -> bool:
    """An existing Vertex AI endpoint the stack references: nothing of it is deployed here."""
    return d.platform is Platform.VERTEX and d.config.vertex_options.existing_endpoint is not None


HUB_COMMITS = "https://huggingface.co/{model}/commits/main"


def _supply_chain(d: ResolvedDeployment, stack: StackConfig, out: Findings) -> None:
    """Pinned weights everywhere (required in prod) and, in prod, images by digest."""
    key = d.key
    prod = stack.environment is Environment.PROD
    if d.config.model_revision is None and not _weights_in_bucket(d):
        message = (f"{d.model.hf_id} is not pinned to a commit: every start (and image build) takes the Hub's "
                   f"current `main`. Set {key}.modelRevision to the commit sha shown at "
                   f"{HUB_COMMITS.format(model=d.model.hf_id)}")
        if prod:
            out.error(message)
        else:
            out.warn(message)
    ref = d.image.ref
    if d.image.unconfirmed:
        out.warn(f"image {ref} ({key}.image or the platform default) is not confirmed to exist: "
                 f"{d.image.unconfirmed}. Pin an image the catalog confirms (stacks/catalog/data/images.yaml) "
                 "once the check fails")
    digest_pinned(ref, f"{key}.image", f"{key}.image", stack, out)


def digest_pinned(ref: str, what: str, key: str, stack: StackConfig, out: Findings) -> None:
    """Prod runs every image by digest: an error naming the image, the key that sets it and how to
    find the digest (a warning while ``access.acknowledgeTagPinnedImages`` is set). Elsewhere a tag
    is allowed, with a warning."""
    if "@sha256:" in ref:
        return
    registry_path = ref
    if "/" in ref and "." not in ref.split("/", 1)[0]:
        # Docker Hub images are pulled through the stack's remote repository (see compose.upstream_image).
        registry_path = f"{stack.region}-docker.pkg.dev/{stack.project}/{stack.prefix}-dockerhub/{ref}"
    message = (f"image {ref} ({what}) is pinned by tag only, which its publisher can move; prod runs images by "
               f"digest. Find the digest with `gcloud artifacts docker images describe {registry_path}` (or "
               f"`docker buildx imagetools inspect {ref}`) and set {key} in {stack.source} to `{ref}@sha256:<digest>`")
    if stack.environment is not Environment.PROD:
        out.warn(message + " (allowed outside prod)")
    elif stack.settings.access.acknowledge_tag_pinned_images:
        out.warn(message + " (acknowledged by llm-serving:access.acknowledgeTagPinnedImages)")
    else:
        out.error(message)


def _weights_in_bucket(d: ResolvedDeployment) -> bool:
    """Weights placed in the bucket by hand (`cloudrun.gcsPrefix`): no token and no revision involved.
    The weights-copy job's copy is not such a case: the job reads the token and copies the pinned revision."""
    options = d.config.cloudrun_options
    return (d.platform is Platform.CLOUDRUN and options.weights in (WeightsSource.GCS, WeightsSource.STREAM)
            and options.gcs_prefix is not None)


def _scale_to_zero(d: ResolvedDeployment, stack: StackConfig, out: Findings) -> None:
    """Say what a cold start costs the first caller, and whether the nodes follow the replicas to zero."""

    t = wake_timings(d)
    out.info(f"scales to zero after {t.idle_seconds} s without a request; the first request after that waits up to "
             f"{t.wait_seconds} s in the KEDA interceptor (a node: {t.node_seconds} s budget, then start-up: "
             f"{t.startup_seconds} s, {d.key}.gke.startupTimeoutSeconds). Give clients a longer timeout")
    gke = stack.settings.gke
    pool = gke.node_pools.get(d.hardware.node_pool or "") if gke and not gke.autopilot else None
    if pool is not None and pool.min_nodes > 0:
        out.warn(f"scales to zero replicas, but node pool {d.hardware.node_pool} keeps minNodes {pool.min_nodes} "
                 f"({pool.machine_type}) billed while idle; set llm-serving:gke.nodePools.{d.hardware.node_pool}.minNodes "
                 "to 0 so the accelerator nodes go too")


def _gke_capacity(d: ResolvedDeployment, stack: StackConfig, out: Findings) -> None:
    gke = stack.settings.gke
    pool = gke.node_pools.get(d.hardware.node_pool or "") if gke else None
    if pool is None:
        return
    machine = CATALOG.machine_type(pool.machine_type)
    per_node = max(1, (machine.accelerator_count if machine else 1) // max(1, d.hardware.devices))
    capacity = pool.max_nodes * per_node
    ranks = [CAPACITY_TYPES.index(f.value) for f in pool.fallbacks]
    if ranks != sorted(ranks):
        out.warn(f"llm-serving:gke.nodePools.{d.hardware.node_pool}.fallbacks tries "
                 f"{' before '.join(f.value for f in pool.fallbacks)}; capacity that can be taken back (Spot) or "
                 f"must wait (Flex-start) ahead of steadier capacity means replicas that restart (a reload and "
                 f"recompile each). The usual order is {', '.join(CAPACITY_TYPES)}")
    if d.scaling.max_replicas > capacity and pool.fallbacks:
        out.info(f"max replicas {d.scaling.max_replicas} exceed node pool {d.hardware.node_pool}'s {capacity}; the rest "
                 f"come from its fallbacks ({', '.join(f.value for f in pool.fallbacks)}) through its ComputeClass")
    elif d.scaling.max_replicas > capacity:
        out.error(f"max replicas {d.scaling.max_replicas} exceeds what node pool {d.hardware.node_pool} can hold "
                  f"({pool.max_nodes} nodes x {per_node} replica per node = {capacity}); lower {d.key}.scaling.maxReplicas "
                  f"or raise llm-serving:gke.nodePools.{d.hardware.node_pool}.maxNodes")


def _startup_budget_checks(d: ResolvedDeployment, out: Findings) -> None:
    """A startup budget below the estimate, or an estimate past the platform's limit, is a warning:
    the figures are planning figures (stacks/catalog/data/startup.yaml), the deploy is the judge."""
    budget = d.startup
    if budget is None or _adopted(d):
        return
    key = f"{d.key}.{budget.setting_key}"
    if budget.configured_seconds is not None and budget.configured_seconds < budget.estimate_seconds:
        out.warn(f"{key} is {budget.configured_seconds} s, below the estimated cold start of {budget.estimate_seconds} s "
                 f"({budget.describe()}); the first replica may be killed before it is ready. Raise it, or measure "
                 f"the load with `python -m tools.load_bench` and keep it if the estimate is pessimistic")
    elif budget.capped:
        out.warn(f"the estimated cold start of {budget.estimate_seconds} s ({budget.describe()}) exceeds "
                 f"{budget.limit_name}, {budget.limit_seconds} s; the budget is capped there. Load faster (weights in "
                 f"the bucket, streamed) or use a platform without that limit")

