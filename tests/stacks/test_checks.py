"""Preview-time checks: each error and warning, through the real config -> resolve path."""

from __future__ import annotations

import copy

import pytest

from offline.mocks import CloudMocks, QuotaAnswer
from offline.plan import plan
from stacks.catalog import CATALOG
from stacks.config import load
from stacks.resolve import resolve_stack
from stacks.schema import ConfigError
from stacks.vllm import render_server

BASE = {
    "gcp:project": "acme-llm-test",
    "gcp:region": "us-central1",
    "llm-serving:environment": "staging",
    "llm-serving:hfTokenSecret": "hf-token",
}
TPU_CLUSTER = {"location": "us-east5-b",
               "nodePools": {"tpu": {"machineType": "ct6e-standard-8t", "tpuTopology": "2x4", "minNodes": 1, "maxNodes": 2}}}


def resolve(deployment: dict, *, gke: dict | None = None, **settings):
    values = dict(BASE, **{f"llm-serving:{k}": v for k, v in settings.items()})
    values["llm-serving:deployments"] = {"model": deployment}
    if gke is not None:
        values["llm-serving:gke"] = gke
    stack = load(values, set(), source="Pulumi.test.yaml", stack="test")
    return resolve_stack(stack)


def messages(resolved, level: str) -> list[str]:
    return [c.message for c in resolved.checks if c.level == level]


def only(resolved, level: str, needle: str) -> str:
    found = [m for m in messages(resolved, level) if needle in m]
    assert found, f"no {level} mentioning {needle!r}; got {[c.render() for c in resolved.checks]}"
    return found[0]


# ---------------------------------------------------------------------------- errors


def test_weights_that_do_not_fit_are_rejected_with_the_numbers():
    resolved = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-70B-Instruct",
                        "hardware": {"machineType": "g2-standard-12", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1}})
    message = only(resolved, "error", "GiB of weights")
    d = resolved.deployments["model"]
    assert "meta-llama/Llama-3.1-70B-Instruct" in message and "nvidia-l4" in message
    assert f"needs about {d.fit.needed_gib_per_device:.1f} GiB per device" in message, message
    assert f"may use {d.fit.budget_gib_per_device:.1f} GiB" in message, message
    # The fix names the smallest machine of the same accelerator that fits, and that machine is accepted.
    assert "g2-standard-96 (8 x nvidia-l4, tensor parallel 8) fits" in message, message
    fixed = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-70B-Instruct",
                     "hardware": {"machineType": "g2-standard-96", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 8}})
    assert not messages(fixed, "error"), messages(fixed, "error")


def test_nothing_of_the_same_accelerator_fits_says_so():
    # 405B at one byte a weight is 47 GiB per A100 40GB at TP 8; 16 does not divide its 8 KV heads.
    resolved = resolve({"platform": "vertex", "model": "meta-llama/Meta-Llama-3.1-405B-Instruct-FP8",
                        "hardware": {"machineType": "a2-highgpu-8g", "acceleratorType": "NVIDIA_TESLA_A100",
                                     "acceleratorCount": 8}})
    assert "Use more or larger accelerators" in only(resolved, "error", "GiB of weights")


def test_vision_11b_on_one_l4_names_the_two_l4_machine_that_fits():
    # The tutorial's text puts the 11B Vision deployment on g2-standard-12; its own logs (39.38 GiB) are an A100
    # 40GB's. On one L4 the weights alone (19.9 GiB) exceed 0.9 x 22.05 GiB, so the plan names the fix that fits.
    one_l4 = {"machineType": "g2-standard-12", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 1}
    for length in (4096, 2048):
        resolved = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.2-11B-Vision-Instruct",
                            "hardware": one_l4, "vllm": {"maxModelLen": length}})
        message = only(resolved, "error", "GiB of weights")
        assert "g2-standard-24 (2 x nvidia-l4, tensor parallel 2) fits" in message, message
    two_l4 = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.2-11B-Vision-Instruct", "vllm": {"maxModelLen": 4096},
                      "hardware": {"machineType": "g2-standard-24", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 2}})
    assert not messages(two_l4, "error"), messages(two_l4, "error")


def test_kv_capacity_below_max_model_len_gives_capacity_and_largest_length():
    resolved = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct",
                        "vllm": {"maxModelLen": 131072}})
    message = only(resolved, "error", "KV cache")
    d = resolved.deployments["model"]
    assert f"{d.fit.kv_capacity_tokens} tokens" in message, message
    assert f"largest max_model_len that fits is {d.fit.largest_max_model_len}" in message
    assert "llm-serving:deployments.model.vllm.maxModelLen" in message
    assert d.fit.largest_max_model_len < 131072


def test_max_model_len_above_the_model_context():
    resolved = resolve({"platform": "cloudrun", "model": "google/gemma-3-1b-it", "vllm": {"maxModelLen": 65536}})
    assert "32768" in only(resolved, "error", "exceeds google/gemma-3-1b-it's context")


def test_tensor_parallel_not_matching_devices_or_heads():
    resolved = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-70B-Instruct",
                        "vllm": {"tensorParallelSize": 3}})
    assert "does not divide" in only(resolved, "error", "tensor_parallel_size 3")
    assert only(resolved, "error", "differs from the 8 accelerators")


@pytest.mark.parametrize("hardware, expected", [
    ({"machineType": "g2-standard-12", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 2}, "use g2-standard-24"),
    ({"machineType": "a2-highgpu-1g", "acceleratorType": "NVIDIA_L4"}, "carries 1 x NVIDIA_TESLA_A100"),
    ({"machineType": "g2-standard-13"}, "did you mean"),
    ({"acceleratorType": "NVIDIA_L5"}, "allowed:"),
])
def test_machine_type_must_carry_the_requested_accelerators(hardware, expected):
    resolved = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct", "hardware": hardware})
    assert "model" not in resolved.deployments, "a bad machine/accelerator pair must not resolve"
    assert any(expected in m for m in messages(resolved, "error")), messages(resolved, "error")


def test_gated_model_without_a_token():
    values = {k: v for k, v in BASE.items() if k != "llm-serving:hfTokenSecret"}
    values["llm-serving:deployments"] = {"model": {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct"}}
    resolved = resolve_stack(load(values, set(), source="Pulumi.test.yaml", stack="test"))
    assert "pulumi config set --secret llm-serving:hfToken" in only(resolved, "error", "gated")


def test_llama_vision_on_a_new_vllm_image_is_rejected_and_fine_on_the_model_garden_default():
    on_new = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.2-11B-Vision-Instruct",
                      "image": "us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:20991231_0000_RC00",
                      "vllmVersion": "0.11.0"})
    assert "removed in vLLM 0.11" in only(on_new, "error", "Llama 3.2 Vision")
    on_default = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.2-11B-Vision-Instruct"})
    assert not [m for m in messages(on_default, "error") if "Vision" in m], messages(on_default, "error")


def test_a_flag_the_pinned_vllm_rejects_is_dropped_and_reported():
    resolved = resolve({"platform": "cloudrun", "model": "google/gemma-3-1b-it", "vllm": {"swapSpace": 16}})
    message = only(resolved, "error", "--swap-space")
    assert "removed in vLLM 0.18" in message and "unrecognized arguments" in message
    d = resolved.deployments["model"]
    assert not any(a.startswith("--swap-space") for a in d.container.args), d.container.args
    # The Vertex default image (vLLM 0.9.2) still accepts it, as the tutorial used it.
    vertex = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct", "vllm": {"swapSpace": 16}})
    assert "--swap-space=16" in vertex.deployments["model"].container.args


def test_extra_args_are_checked_against_the_version_too():
    resolved = resolve({"platform": "cloudrun", "model": "google/gemma-3-1b-it",
                        "vllm": {"extraArgs": ["--disable-log-requests"]}})
    assert only(resolved, "error", "--disable-log-requests")


def test_hpa_with_disable_log_stats_or_a_metric_the_version_lacks():
    resolved = resolve({"platform": "gke", "model": "meta-llama/Llama-3.1-70B", "hardware": {"nodePool": "tpu"},
                        "vllm": {"disableLogStats": True}, "scaling": {"maxReplicas": 2}}, gke=TPU_CLUSTER)
    assert "never scale" in only(resolved, "error", "disableLogStats")
    old = resolve({"platform": "gke", "model": "meta-llama/Llama-3.1-70B", "image": "vllm/vllm-tpu:v0.8.0",
                   "scaling": {"metric": "kv_cache_usage"}}, gke=TPU_CLUSTER)
    d = old.deployments["model"]
    assert d.scaling.metric == "vllm:gpu_cache_usage_perc", "before 0.9.2 the KV metric had its old name"
    new = resolve({"platform": "gke", "model": "meta-llama/Llama-3.1-70B", "scaling": {"metric": "kv_cache_usage"}},
                  gke=TPU_CLUSTER)
    assert new.deployments["model"].scaling.metric == "vllm:kv_cache_usage_perc"
    assert new.deployments["model"].scaling.target == 0.8, "the KV-cache usage target is a 0-1 fraction"


def test_max_replicas_above_node_pool_capacity():
    resolved = resolve({"platform": "gke", "model": "meta-llama/Llama-3.1-70B", "scaling": {"maxReplicas": 3}},
                       gke=TPU_CLUSTER)
    assert "2 nodes x 1 replica per node = 2" in only(resolved, "error", "max replicas 3")


@pytest.mark.parametrize("pool, expected", [
    ({"machineType": "ct6e-standard-8t", "tpuTopology": "2x2"}, "use tpuTopology 2x4"),
    ({"machineType": "ct6e-standard-8t", "tpuTopology": "4x4"}, "spans"),
    ({"machineType": "ct6e-standard-8t"}, "needs one of"),
    ({"machineType": "g2-standard-24", "tpuTopology": "2x4"}, "GPU machine type"),
])
def test_tpu_topology_machine_and_chips_must_agree(pool, expected):
    gke = {"location": "us-east5-b", "nodePools": {"tpu": dict(pool, maxNodes=1)}}
    resolved = resolve({"platform": "gke", "model": "meta-llama/Llama-3.1-70B"}, gke=gke)
    assert any(expected in m for m in messages(resolved, "error")), messages(resolved, "error")


def test_cloudrun_gpu_type_and_minimums():
    bad_gpu = resolve({"platform": "cloudrun", "model": "google/gemma-3-1b-it", "hardware": {"acceleratorType": "nvidia-t4"}})
    assert "nvidia-l4" in only(bad_gpu, "error", "not a Cloud Run GPU type")
    # Below the GPU's minimums is invalid config (checked before resolve, with the key path).
    with pytest.raises(ConfigError) as error:
        resolve({"platform": "cloudrun", "model": "google/gemma-3-1b-it", "hardware": {"cpu": "2", "memory": "8Gi"}})
    assert "deployments.model.hardware.cpu: got '2'; Cloud Run with nvidia-l4 takes 4 to 8" in str(error.value)
    assert "deployments.model.hardware.memory: got '8Gi'; Cloud Run with nvidia-l4 takes 16Gi to 32Gi" in str(error.value)


def test_quota_below_max_replica_needs_fails_the_plan_and_unreadable_quota_warns():
    values = dict(BASE)
    values["llm-serving:deployments"] = {"model": {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct",
                                                    "scaling": {"maxReplicas": 4}}}
    short = CloudMocks(project="acme-llm-test", quotas={"CustomModelServingL4GPUsPerProjectPerRegion": QuotaAnswer(2)})
    result = plan(copy.deepcopy(values), set(), stack="test", source="Pulumi.test.yaml", mocks=short)
    assert result.failed, "a quota of 2 for 4 replicas must refuse the deploy"
    errors = [c.message for c in result.checks if c.level == "error"]
    assert any("is 2, but the stack needs 4" in m for m in errors), errors
    unreadable = CloudMocks(project="acme-llm-test", quotas={"CustomModelServingL4GPUsPerProjectPerRegion": QuotaAnswer(None)})
    result = plan(copy.deepcopy(values), set(), stack="test", source="Pulumi.test.yaml", mocks=unreadable)
    assert not result.failed
    assert any("could not be read" in c.message for c in result.checks if c.level == "warning"), result.checks


@pytest.mark.parametrize("delete_first", [False, True], ids=["create-first", "delete-first"])
def test_quota_that_cannot_hold_a_create_first_replacement_warns_and_names_the_key(delete_first):
    values = dict(BASE)
    values["llm-serving:deployments"] = {"model": {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct",
                                                    "scaling": {"maxReplicas": 2},
                                                    "vertex": {"deleteBeforeReplace": delete_first}}}
    mocks = CloudMocks(project="acme-llm-test", quotas={"CustomModelServingL4GPUsPerProjectPerRegion": QuotaAnswer(3)})
    result = plan(copy.deepcopy(values), set(), stack="test", source="Pulumi.test.yaml", mocks=mocks)
    assert not result.failed, [c.render() for c in result.checks]
    warned = [c.message for c in result.checks if c.level == "warning" and "is replaced" in c.message]
    if delete_first:
        assert not warned, warned
    else:
        assert len(warned) == 1 and "not for 4 while the Vertex AI endpoint of model is replaced" in warned[0], warned
        assert "llm-serving:deployments.model.vertex.deleteBeforeReplace: true" in warned[0], warned[0]


# ---------------------------------------------------------------------------- warnings


def test_vision_on_model_garden_defaults_to_12_and_256_is_refused_with_the_memory_it_needs():
    # The Vertex tutorial's common issue 1: 256 sequences run Llama 3.2 11B Vision out of memory on an
    # A100 40GB (its recommended a2-highgpu-1g); 12 is its fix and the only max_num_seqs the project sets.
    default = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.2-11B-Vision-Instruct",
                       "vllm": {"maxModelLen": 2048}})
    d = default.deployments["model"]
    assert d.vllm.max_num_seqs == 12 and "--max-num-seqs=12" in d.container.args, d.container.args
    assert not messages(default, "error") and not [m for m in messages(default, "warning") if "max_num_seqs" in m]
    high = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.2-11B-Vision-Instruct",
                    "vllm": {"maxNumSeqs": 256, "maxModelLen": 2048}})
    message = only(high, "error", "vision encoder")
    fit = high.deployments["model"].fit
    assert fit.needed_gib_per_device > 300 and f"needs about {fit.needed_gib_per_device:.1f} GiB" in message, message
    assert "maxNumSeqs to at most" in message, message
    suggested = int(message.split("maxNumSeqs to at most ")[1].split(",")[0])
    assert 12 <= suggested < 256, message


@pytest.mark.parametrize("platform", ["vertex", "cloudrun"])
def test_base_model_without_chat_template_warns_on_every_platform(platform):
    # vertex runs the Model Garden server by default: the tutorial hit this failure there.
    resolved = resolve({"platform": platform, "model": "meta-llama/Llama-3.1-8B"})
    if platform == "vertex":
        assert resolved.deployments["model"].image.server == "model-garden", resolved.deployments["model"].image
    message = only(resolved, "warning", "without a chat template")
    assert "llm-serving:deployments.model.vllm.chatTemplate" in message and "4.44" in message, message
    assert "cloud.google.com/vertex-ai/generative-ai/docs/open-models/vllm/use-vllm" in message, message
    with_template = resolve({"platform": platform, "model": "meta-llama/Llama-3.1-8B", "vllm": {"chatTemplate": "/t.jinja"}})
    assert not [m for m in messages(with_template, "warning") if "chat template" in m]


def test_lora_on_a_vision_model_on_vertex_is_an_error_citing_the_limitation():
    resolved = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.2-11B-Vision-Instruct",
                        "lora": {"adapters": {"support": "loras/support-v3"}}})
    message = only(resolved, "error", "LoRA adapters (support) on vision model")
    assert "does not work with multimodal models" in message, message
    assert "https://cloud.google.com/vertex-ai/generative-ai/docs/open-models/vllm/use-vllm" in message, message
    assert "https://docs.vllm.ai/en/latest/features/lora.html" in message, message
    assert "llm-serving:deployments.model.lora.adapters" in message, message
    text = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct",
                    "lora": {"adapters": {"support": "loras/support-v3"}}})
    assert not [m for m in messages(text, "error") if "LoRA" in m], messages(text, "error")


def test_adapters_outside_vertex_warn_that_nothing_loads_them():
    resolved = resolve({"platform": "gke", "model": "meta-llama/Llama-3.1-70B-Instruct",
                        "hardware": {"nodePool": "tpu"}, "lora": {"adapters": {"support": "loras/support-v3"}}},
                       gke=TPU_CLUSTER)
    message = only(resolved, "warning", "LoRA adapters (support) on gke")
    assert "loads none of them" in message and "--lora-modules" in message, message


def test_adapters_from_the_hub_warn_that_they_are_not_pinned():
    resolved = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct",
                        "lora": {"adapters": {"sql": "hf://acme/sql-lora", "support": "loras/support-v3"}}})
    message = only(resolved, "warning", "LoRA adapters sql come from the Hugging Face Hub")
    assert "support" not in message.split("come from")[0], message


CUSTOM_OPEN_MODEL = {"architecture": "LlamaForCausalLM", "paramsBillion": 8.03, "numLayers": 32, "hiddenSize": 4096,
                     "numAttentionHeads": 32, "numKvHeads": 8, "headDim": 128, "vocabSize": 128256,
                     "maxContext": 131072, "chatTemplate": True}


@pytest.mark.parametrize("settings, secret, project", [
    ({"hfTokenSecret": "hf-token"}, "hf-token", "acme-llm-test"),
    ({"hfTokenSecret": "projects/shared-secrets/secrets/hf-read"}, "hf-read", "shared-secrets"),
])
def test_gated_model_prints_how_to_verify_the_token_access(settings, secret, project):
    values = {k: v for k, v in BASE.items() if k != "llm-serving:hfTokenSecret"}
    values.update({f"llm-serving:{k}": v for k, v in settings.items()})
    values["llm-serving:deployments"] = {"model": {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct"}}
    resolved = resolve_stack(load(values, set(), source="Pulumi.test.yaml", stack="test"))
    message = only(resolved, "info", "cannot be checked offline")
    command = (f"gcloud secrets versions access latest --secret={secret} --project={project} "
               "| sed 's/^/Authorization: Bearer /' | curl -sSf -o /dev/null -H @- "
               "https://huggingface.co/api/models/meta-llama/Llama-3.1-8B-Instruct/auth-check")
    assert command in message, message
    # A model that is not gated gets no such line (every catalog model is gated; a custom one is not by default).
    public = resolve({"platform": "vertex", "model": "acme/open-8b", "customModel": CUSTOM_OPEN_MODEL})
    assert not [m for m in messages(public, "info") if "auth-check" in m], messages(public, "info")


def test_gated_model_with_a_created_secret_names_that_secret():
    values = {k: v for k, v in BASE.items() if k != "llm-serving:hfTokenSecret"}
    values["llm-serving:hfToken"] = "hf_placeholder"
    values["llm-serving:deployments"] = {"model": {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct"}}
    resolved = resolve_stack(load(values, {"llm-serving:hfToken"}, source="Pulumi.test.yaml", stack="test"))
    message = only(resolved, "info", "cannot be checked offline")
    # The secret the stack creates, by the same name the program gives it.
    assert f"--secret={resolved.names.hf_token_secret} --project=acme-llm-test" in message, message


def test_adopted_endpoint_is_reported_and_must_be_in_the_stack_region():
    resolved = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct",
                        "vertex": {"existingEndpoint": "projects/acme-llm-test/locations/us-central1/endpoints/123"}})
    message = only(resolved, "info", "adopts endpoint")
    assert "never deploys to, changes or deletes it" in message and "pulumi import" in message, message
    assert not [m for m in messages(resolved, "info") if "auth-check" in m], "nothing is deployed: no token check"
    elsewhere = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct",
                         "vertex": {"existingEndpoint": "projects/acme-llm-test/locations/europe-west4/endpoints/123"}})
    assert "the stack deploys to us-central1" in only(elsewhere, "error", "is in region europe-west4")


def test_few_full_length_sequences_no_longer_warn():
    # The scheduler admits by free KV blocks: a cache holding only a few max_model_len sequences still serves
    # many typical ones, so only "not even one fits" is reported (as vLLM's own refusal).
    # Pinned, so that the weights-revision warning does not mask the capacity warnings this test is about.
    resolved = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct", "modelRevision": "0" * 40,
                        "vllm": {"maxModelLen": 16384}})
    fit = resolved.deployments["model"].fit
    assert 1 <= fit.sequences_at_max_model_len < 4, fit
    assert fit.sequences_at_typical_length > 20 * fit.sequences_at_max_model_len / 2, fit
    # The tag-pinned image warning outside prod is about provenance, not fit.
    fit_warnings = [m for m in messages(resolved, "warning") if "pinned by tag only" not in m]
    assert not fit_warnings and not messages(resolved, "error"), resolved.checks


def test_typical_request_length_is_set_per_deployment():
    resolved = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct", "typicalRequestTokens": 2048})
    fit = resolved.deployments["model"].fit
    assert fit.typical_request_tokens == 2048
    assert fit.sequences_at_typical_length == pytest.approx(fit.kv_cache_gib_per_device * 2**30 / (2048 * 128 * 1024))


def test_fp8_kv_cache_is_an_option_with_its_caveat():
    plain = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct"}).deployments["model"]
    resolved = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct", "vllm": {"kvCacheDtype": "fp8"}})
    d = resolved.deployments["model"]
    assert "--kv-cache-dtype=fp8" in d.container.args
    assert d.fit.kv_capacity_tokens == plain.fit.kv_capacity_tokens_fp8
    assert abs(d.fit.kv_capacity_tokens - 2 * plain.fit.kv_capacity_tokens) <= 16
    assert "uncalibrated" in only(resolved, "info", "FP8 KV cache")
    assert "--kv-cache-dtype" not in " ".join(plain.container.args)


def test_fp8_kv_cache_on_an_image_older_than_the_feature_is_refused():
    resolved = resolve({"platform": "cloudrun", "model": "google/gemma-3-1b-it", "image": "vllm/vllm-openai:v0.3.0",
                        "vllm": {"kvCacheDtype": "fp8"}})
    assert "predates the FP8 KV cache" in only(resolved, "error", "kvCacheDtype")


def test_tpu_support_matrix():
    untested = resolve({"platform": "gke", "model": "meta-llama/Llama-3.1-70B", "hardware": {"nodePool": "tpu"}},
                       gke=TPU_CLUSTER)
    message = only(untested, "warning", "support matrix")
    assert "release_model_support.md" in message and "meta-llama/Llama-3.3-70B-Instruct" in message
    passing = resolve({"platform": "gke", "model": "meta-llama/Llama-3.1-8B-Instruct", "hardware": {"nodePool": "tpu"}},
                      gke=TPU_CLUSTER)
    assert not [m for m in messages(passing, "warning") if "support matrix" in m]


# Qwen3-4B as its Hugging Face config.json gives it. The catalog carries neither model below, so the deployment
# describes one; the support check reads only the model id, and this shape fits the slice for both.
QWEN3_4B = {"architecture": "Qwen3ForCausalLM", "paramsBillion": 4.02, "numLayers": 36, "hiddenSize": 2560,
            "numAttentionHeads": 32, "numKvHeads": 8, "headDim": 128, "vocabSize": 151936, "maxContext": 40960,
            "chatTemplate": True, "intermediateSize": 9728}


@pytest.mark.parametrize("model, status", [("Qwen/Qwen3-4B", "failing"), ("openai/gpt-oss-20b", "untested")])
def test_tpu_support_matrix_failing_and_untested_rows_warn_with_the_source(model, status):
    assert CATALOG.tpu_v6e.support_matrix[model] == status
    resolved = resolve({"platform": "gke", "model": model, "customModel": QWEN3_4B, "hardware": {"nodePool": "tpu"}},
                       gke=TPU_CLUSTER)
    message = only(resolved, "warning", "support matrix")
    assert model in message and CATALOG.tpu_v6e.support_matrix_sources[0] in message, message
    assert ("fails a test" if status == "failing" else "listed as untested") in message, message
    assert not messages(resolved, "error"), messages(resolved, "error")


def test_tpu_memory_utilization_follows_the_tpu_recipe():
    d = resolve({"platform": "gke", "model": "meta-llama/Llama-3.1-8B-Instruct", "hardware": {"nodePool": "tpu"}},
                gke=TPU_CLUSTER).deployments["model"]
    assert "--gpu-memory-utilization=0.98" in d.container.args, d.container.args


def test_idle_accelerators_in_dev_warn_on_cloud_run():
    resolved = resolve({"platform": "cloudrun", "model": "google/gemma-3-1b-it", "scaling": {"minReplicas": 1}},
                       environment="dev")
    assert only(resolved, "warning", "billed while idle")


def test_settings_that_cost_throughput_warn():
    resolved = resolve({"platform": "cloudrun", "model": "google/gemma-3-1b-it",
                        "vllm": {"enforceEager": True, "extraArgs": ["--enable-lora"]}})
    assert "14%" in only(resolved, "warning", "enforce_eager")
    assert "30%" in only(resolved, "warning", "--enable-lora without adapters")


# ---------------------------------------------------------------------------- defaults (issue: defaults that beat the tutorials)


def test_defaults_keep_cuda_graphs_stats_and_lora_off():
    d = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct"}).deployments["model"]
    args = d.container.args
    for flag in ("--enforce-eager", "--enable-lora", "--disable-log-stats", "--swap-space", "--max-loras"):
        assert not any(a.startswith(flag) for a in args), f"{flag} is in the default args: {args}"
    assert "--gpu-memory-utilization=0.9" in args
    assert "--tensor-parallel-size=1" in args
    # No cap: vLLM's scheduler admits by free KV blocks (measured: the old cap cost a third to half of throughput).
    assert not any(a.startswith("--max-num-seqs") for a in args), args


def test_lora_flags_only_with_adapters():
    d = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct",
                 "lora": {"adapters": {"support": "loras/support-v3"}, "maxLoras": 2, "maxCpuLoras": 4}}).deployments["model"]
    assert {"--enable-lora", "--max-loras=2", "--max-cpu-loras=4"} <= set(d.container.args), d.container.args


def test_the_tutorial_flags_stay_reachable_through_config():
    d = resolve({"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct",
                 "vllm": {"enforceEager": True, "disableLogStats": True, "swapSpace": 16, "maxNumSeqs": 256},
                 "lora": {"adapters": {"a": "loras/a"}, "maxCpuLoras": 8}}).deployments["model"]
    for arg in ("--enforce-eager", "--disable-log-stats", "--swap-space=16", "--max-num-seqs=256", "--enable-lora",
                "--max-loras=1", "--max-cpu-loras=8"):
        assert arg in d.container.args, f"{arg} missing from {d.container.args}"


def test_renderer_emits_only_flags_the_version_accepts():
    d = resolve({"platform": "cloudrun", "model": "google/gemma-3-1b-it"}).deployments["model"]
    import dataclasses

    with_swap = dataclasses.replace(d.vllm, swap_space=4)
    on_new = render_server(with_swap, d.image, port=8080)
    assert "--swap-space" in on_new.rejected_flags and not any("swap" in a for a in on_new.args)
    on_old = render_server(with_swap, dataclasses.replace(d.image, vllm_version=(0, 9, 2)), port=8080)
    assert "--swap-space=4" in on_old.args and not on_old.rejected_flags


def test_vertex_accelerator_must_be_offered_in_the_region():
    values = dict(BASE, **{"gcp:region": "europe-west4"})
    values["llm-serving:deployments"] = {"model": {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct",
                                                   "hardware": {"machineType": "a3-ultragpu-8g"}}}
    resolved = resolve_stack(load(values, set(), source="Pulumi.test.yaml", stack="test"))
    message = only(resolved, "error", "Vertex AI offers no NVIDIA_H200_141GB in europe-west4")
    assert "us-central1" in message, message
    values["llm-serving:deployments"]["model"]["hardware"] = {"machineType": "g2-standard-12"}
    resolved = resolve_stack(load(values, set(), source="Pulumi.test.yaml", stack="test"))
    assert not [m for m in messages(resolved, "error") if "Vertex AI offers" in m], "L4 is offered in europe-west4"


def test_nothing_vanishes_a_deployment_resolve_drops_silently_becomes_an_error(monkeypatch):
    from pathlib import Path

    import stacks.resolve as resolve_module
    from offline.plan import read_stack_file

    values, secrets = read_stack_file(Path(__file__).resolve().parents[2] / "Pulumi.dev.yaml")
    stack = load(values, secrets, source="Pulumi.dev.yaml", stack="dev")
    monkeypatch.setattr(resolve_module, "_hardware", lambda *args, **kwargs: None)  # a bug that records nothing
    resolved = resolve_stack(stack)
    for name in stack.deployments:
        assert name not in resolved.deployments
        assert any(c.deployment == name and c.level == "error" and "could not be resolved" in c.message
                   for c in resolved.checks), f"{name} vanished without an error: {resolved.checks}"


# ---------------------------------------------------------------------------- image provenance


def test_an_image_the_catalog_marks_unconfirmed_warns_with_the_image_and_where_to_check():
    from stacks.catalog import CATALOG

    unconfirmed = [spec for spec in CATALOG.images.values() if spec.unconfirmed]
    assert unconfirmed, "the image catalog marks no image unconfirmed; the test cannot tell"
    spec = unconfirmed[0]
    platform = "vertex" if spec.server == "model-garden" else ("gke" if spec.accelerator_kind == "tpu" else "cloudrun")
    deployment = {"platform": platform, "model": "meta-llama/Llama-3.1-8B-Instruct", "image": spec.ref}
    gke = TPU_CLUSTER if platform == "gke" else None
    if platform == "gke":
        deployment["hardware"] = {"nodePool": "tpu"}
    resolved = resolve(deployment, gke=gke)
    message = only(resolved, "warning", "not confirmed to exist")
    assert spec.ref in message and spec.unconfirmed in message, message
    assert "llm-serving:deployments.model.image" in message, message


def test_every_default_image_is_confirmed_and_plans_without_the_warning():
    from stacks.catalog import CATALOG, PLATFORMS

    for platform in PLATFORMS:
        spec = CATALOG.default_image(platform)
        assert not spec.unconfirmed, f"images.yaml: the {platform} default {spec.ref} is unconfirmed: {spec.unconfirmed}"
    resolved = resolve({"platform": "gke", "model": "meta-llama/Llama-3.1-8B-Instruct", "hardware": {"nodePool": "tpu"}},
                       gke=TPU_CLUSTER)
    assert not [m for m in messages(resolved, "warning") if "not confirmed to exist" in m], \
        [c.render() for c in resolved.checks]


def test_an_unconfirmed_default_is_refused_by_the_catalog(monkeypatch):
    import stacks.catalog as catalog

    real = catalog._load
    data = copy.deepcopy(real("images.yaml").data)
    default = next(item for item in data["upstream"] if "gke-tpu" in item.get("default_for", []))
    default["unconfirmed"] = "no public reference found"
    monkeypatch.setattr(catalog, "_load", lambda name: catalog._Reader(data, name) if name == "images.yaml" else real(name))
    with pytest.raises(catalog.CatalogError, match="must be confirmed by a public source"):
        catalog._load_images()
