"""The catalog loads, every fact has a source, and the lookups the stacks rely on answer correctly."""

from __future__ import annotations

import dataclasses
import re

import pytest

from stacks import catalog as catalog_module
from stacks.catalog import CATALOG, CatalogError, load_catalog, parse_version

KIB = 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.9.2", (0, 9, 2)), ("v0.32.0", (0, 32, 0)), ("0.8.5.post1", (0, 8, 5)), ("1", (1, 0, 0))],
)
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_parse_version_rejects_garbage():
    with pytest.raises(ValueError, match="Not a version"):
        parse_version("latest")


def test_every_record_has_a_source():
    tables = [CATALOG.models, CATALOG.accelerators, CATALOG.machine_types, CATALOG.tpu_topologies,
              CATALOG.images, CATALOG.flags, CATALOG.metrics, CATALOG.prices]
    for table in tables:
        for key, record in table.items():
            assert record.sources and all(s.strip() for s in record.sources), f"{type(record).__name__} {key} has no source"


def test_records_are_frozen():
    spec = CATALOG.model("meta-llama/Llama-3.1-8B-Instruct")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_layers = 1
    with pytest.raises(TypeError):
        CATALOG.models["x"] = spec


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "canonical"),
    [
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("meta-Llama/Meta-Llama-3.1-70B", "meta-llama/Llama-3.1-70B"),  # the tutorial's capitalisation
        ("META-LLAMA/LLAMA-3.1-405B-INSTRUCT-FP8", "meta-llama/Llama-3.1-405B-Instruct-FP8"),
        ("meta-llama/Meta-Llama-3.1-405B-FP8", "meta-llama/Llama-3.1-405B-FP8"),
        ("meta-llama/Llama-3.2-11B-Vision-Instruct", "meta-llama/Llama-3.2-11B-Vision-Instruct"),
        ("google/gemma-3-1b-it", "google/gemma-3-1b-it"),
    ],
)
def test_model_lookup_by_id_or_alias(query, canonical):
    spec = CATALOG.model(query)
    assert spec is not None, query
    assert spec.hf_id == canonical


def test_unknown_model_is_none():
    assert CATALOG.model("meta-llama/Llama-4-Scout") is None


def test_required_model_ids_present():
    wanted = [
        "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-70B",
        "meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-405B", "meta-llama/Llama-3.1-405B-Instruct",
        "meta-llama/Llama-3.1-405B-FP8", "meta-llama/Llama-3.1-405B-Instruct-FP8",
        "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-3B",
        "meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-3.2-11B-Vision", "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "meta-llama/Llama-3.2-90B-Vision", "meta-llama/Llama-3.2-90B-Vision-Instruct",
    ] + [f"google/gemma-3-{size}-{kind}" for size in ("1b", "4b", "12b", "27b") for kind in ("pt", "it")]
    missing = [m for m in wanted if m not in CATALOG.models]
    assert not missing, f"missing models: {missing}"


def test_chat_template_only_on_instruct_variants():
    for hf_id, spec in CATALOG.models.items():
        instruct = "Instruct" in hf_id or hf_id.endswith("-it")
        assert spec.chat_template == instruct, hf_id


# bf16 KV bytes per token, 2 x layers x kv_heads x head_dim x 2 (vllm/v1/kv_cache_interface.py), from each model's config.json.
@pytest.mark.parametrize(
    ("hf_id", "kib"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", 128),
        ("meta-llama/Llama-3.1-70B-Instruct", 320),
        ("meta-llama/Llama-3.1-405B-Instruct", 504),
        ("meta-llama/Llama-3.2-1B-Instruct", 32),
        ("meta-llama/Llama-3.2-3B-Instruct", 112),
        ("meta-llama/Llama-3.2-11B-Vision-Instruct", 128),  # self-attention layers only
        ("meta-llama/Llama-3.2-90B-Vision-Instruct", 320),
    ],
)
def test_kv_bytes_per_token_matches_facts(hf_id, kib):
    spec = CATALOG.model(hf_id)
    assert spec.num_layers * spec.kv_bytes_per_layer_token() == kib * KIB, hf_id


# Gemma 3 (full layers, local layers at the window, all-full fallback) in KiB, from each config.json's layer pattern.
# How a window shrinks the cache over a sequence is the estimate's job (tests/stacks/test_fit.py).
@pytest.mark.parametrize(
    ("size", "window", "full_kib", "local_kib", "fallback_kib"),
    [("1b", 512, 4, 22, 26), ("4b", 1024, 20, 116, 136), ("12b", 1024, 64, 320, 384), ("27b", 1024, 80, 416, 496)],
)
def test_gemma3_sliding_window_layers(size, window, full_kib, local_kib, fallback_kib):
    spec = CATALOG.model(f"google/gemma-3-{size}-it")
    per_layer = spec.kv_bytes_per_layer_token()
    assert spec.sliding_window == window
    assert (spec.num_layers - spec.sliding_window_layers) * per_layer == full_kib * KIB, f"gemma-3-{size}: full layers"
    assert spec.sliding_window_layers * per_layer == local_kib * KIB, f"gemma-3-{size}: sliding-window layers"
    assert spec.num_layers * per_layer == fallback_kib * KIB, f"gemma-3-{size}: all layers"


def test_fp8_kv_halves_bytes():
    spec = CATALOG.model("meta-llama/Llama-3.1-8B-Instruct")
    assert spec.num_layers * spec.kv_bytes_per_layer_token(kv_dtype_bytes=1.0) == 64 * KIB


def test_weight_bytes_per_param():
    def weights(hf_id: str) -> float:
        spec = CATALOG.model(hf_id)
        assert spec is not None, hf_id
        return spec.params_billion * 1e9 * spec.weight_bytes_per_param

    assert weights("meta-llama/Llama-3.1-8B") == pytest.approx(16.06e9)
    assert weights("meta-llama/Llama-3.1-405B-Instruct-FP8") < 0.65 * weights("meta-llama/Llama-3.1-405B-Instruct")


def test_vision_models():
    for hf_id in ("meta-llama/Llama-3.2-11B-Vision", "meta-llama/Llama-3.2-90B-Vision-Instruct"):
        spec = CATALOG.model(hf_id)
        assert spec.architecture == "MllamaForConditionalGeneration"
        assert spec.modality == "vision" and spec.vision_encoder is not None
    assert CATALOG.model("meta-llama/Llama-3.2-11B-Vision").cross_attention_layers == 8
    assert CATALOG.model("meta-llama/Llama-3.2-90B-Vision").cross_attention_layers == 20
    assert CATALOG.model("google/gemma-3-1b-it").architecture == "Gemma3ForCausalLM"
    assert CATALOG.model("google/gemma-3-1b-it").modality == "text"
    assert CATALOG.model("google/gemma-3-27b-it").architecture == "Gemma3ForConditionalGeneration"


# --- accelerators and machines --------------------------------------------------------------


def test_accelerator_lookups():
    assert CATALOG.accelerator_by_vertex_name("NVIDIA_L4").key == "nvidia-l4"
    assert CATALOG.accelerator_by_vertex_name("NVIDIA_TESLA_A100").key == "nvidia-tesla-a100"
    assert CATALOG.accelerator_by_vertex_name("TPU_V6E") is None
    assert CATALOG.accelerator_by_cloudrun_gpu("nvidia-rtx-pro-6000").cloudrun_min_cpu == 20
    l4 = CATALOG.accelerator_by_cloudrun_gpu("nvidia-l4")
    assert (l4.cloudrun_min_cpu, l4.cloudrun_min_memory_gib) == (4, 16)
    assert CATALOG.accelerators["tpu-v6e"].vertex_accelerator is None
    assert CATALOG.accelerators["tpu-v6e"].gke_accelerator == "tpu-v6e-slice"
    assert CATALOG.accelerators["nvidia-a100-80gb"].memory_bytes == 81251 * 2**20  # as CUDA reports an A100 80GB


def test_machine_types():
    expected_counts = {
        "g2-standard-12": ("nvidia-l4", 1), "g2-standard-24": ("nvidia-l4", 2), "g2-standard-96": ("nvidia-l4", 8),
        "a2-highgpu-1g": ("nvidia-tesla-a100", 1), "a2-megagpu-16g": ("nvidia-tesla-a100", 16),
        "a2-ultragpu-8g": ("nvidia-a100-80gb", 8), "a3-highgpu-8g": ("nvidia-h100-80gb", 8),
        "a3-ultragpu-8g": ("nvidia-h200-141gb", 8), "ct6e-standard-8t": ("tpu-v6e", 8),
    }
    for name, (accelerator, count) in expected_counts.items():
        mt = CATALOG.machine_type(name)
        assert (mt.accelerator, mt.accelerator_count) == (accelerator, count), name
    assert CATALOG.machine_type("n1-standard-4") is None
    for mt in CATALOG.machine_types.values():
        assert mt.accelerator in CATALOG.accelerators


def test_tpu_topologies():
    topo = CATALOG.tpu_topologies["2x4"]
    assert (topo.chips, topo.hosts, topo.machine_type) == (8, 1, "ct6e-standard-8t")
    assert CATALOG.tpu_topologies["16x16"].machine_type == "ct6e-standard-4t"
    for t in CATALOG.tpu_topologies.values():
        per_vm = CATALOG.machine_types[t.machine_type].accelerator_count
        assert t.chips == t.hosts * per_vm, t.name


# --- images, flags, metrics, prices ---------------------------------------------------------


def test_default_images():
    vertex = CATALOG.default_image("vertex")
    assert vertex.ref.endswith("pytorch-vllm-serve:20250710_0916_RC01")
    assert (vertex.vllm_version, vertex.server, vertex.architecture) == ((0, 9, 2), "model-garden", "x86")
    for platform in ("cloudrun", "gke-gpu"):
        image = CATALOG.default_image(platform)
        assert image.ref == "vllm/vllm-openai:v0.32.0" and image.server == "openai"
    tpu = CATALOG.default_image("gke-tpu")
    # The newest vllm/vllm-tpu tag a public source shows; v0.32.0 stays in the catalog, unconfirmed.
    assert tpu.ref == "vllm/vllm-tpu:v0.26.0" and tpu.accelerator_kind == "tpu" and tpu.vllm_version == (0, 26, 0)
    assert not tpu.unconfirmed and CATALOG.images["vllm/vllm-tpu:v0.32.0"].unconfirmed
    with pytest.raises(KeyError):
        CATALOG.default_image("lambda")


def test_no_image_is_unpinned():
    for ref in CATALOG.images:
        assert not ref.endswith(":latest"), ref
        assert re.search(r":[\w.\-]+$", ref), ref


def test_image_lookup():
    tutorial_tpu = CATALOG.image("docker.io/vllm/vllm-tpu:2e33fe419186c65a18da6668972d61d7bbc31564")
    assert tutorial_tpu is not None and not tutorial_tpu.default_for
    arm = CATALOG.image("us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:20250717_0916_arm_RC01")
    assert arm.architecture == "arm"
    assert CATALOG.image("us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/pytorch-vllm-serve:20250506_0916_RC01").vllm_version == (0, 8, 5)
    assert CATALOG.image("vllm/vllm-openai:latest") is None


def test_flags():
    assert CATALOG.flag_accepted("--swap-space", (0, 32, 0), "openai") is False
    assert CATALOG.flag_accepted("--swap-space", (0, 9, 2), "model-garden") is True
    assert CATALOG.flag_accepted("--swap-space=16", (0, 17, 1), "openai") is True
    assert CATALOG.flag_accepted("--disable-log-requests", (0, 11, 2), "openai") is True
    assert CATALOG.flag_accepted("--disable-log-requests", (0, 12, 0), "openai") is False
    assert CATALOG.flag_accepted("--enable-log-requests", (0, 9, 2), "model-garden") is False
    assert CATALOG.flag_accepted("--enable-log-requests", (0, 32, 0), "openai") is True
    assert CATALOG.flag_accepted("--model-type", (0, 9, 2), "model-garden") is True
    assert CATALOG.flag_accepted("--model-type", (0, 9, 2), "openai") is False
    assert CATALOG.flag_accepted("--max-cpu-loras", (0, 32, 0), "openai") is True
    assert CATALOG.flag_accepted("--some-future-flag", (0, 32, 0), "openai") is True  # unknown: not blocked


def test_required_flags_present():
    wanted = {"--swap-space", "--disable-log-requests", "--enable-log-requests", "--model-type", "--max-cpu-loras",
              "--enable-lora", "--max-loras", "--enforce-eager", "--disable-log-stats", "--limit-mm-per-prompt",
              "--served-model-name", "--download-dir", "--chat-template", "--trust-remote-code", "--max-num-seqs",
              "--max-model-len", "--gpu-memory-utilization", "--tensor-parallel-size", "--dtype", "--load-format",
              "--max-num-batched-tokens", "--enable-prefix-caching", "--kv-cache-dtype"}
    assert wanted <= set(CATALOG.flags)
    assert "JSON" in CATALOG.flags["--limit-mm-per-prompt"].note


def test_metrics():
    assert CATALOG.metric_exported("vllm:gpu_cache_usage_perc", (0, 32, 0)) is False
    assert CATALOG.metric_exported("vllm:gpu_cache_usage_perc", (0, 10, 2)) is True
    assert CATALOG.metric_exported("vllm:gpu_cache_usage_perc", (0, 11, 0)) is False  # hidden
    assert CATALOG.metric_exported("vllm:kv_cache_usage_perc", (0, 32, 0)) is True
    assert CATALOG.metric_exported("vllm:kv_cache_usage_perc", (0, 9, 2)) is True
    assert CATALOG.metric_exported("vllm:kv_cache_usage_perc", (0, 9, 1)) is False
    assert CATALOG.metric_exported("vllm:avg_generation_throughput_toks_per_s", (0, 6, 2)) is True
    assert CATALOG.metric_exported("vllm:avg_generation_throughput_toks_per_s", (0, 7, 2)) is False
    for stable in ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:generation_tokens_total"):
        for version in ((0, 6, 2), (0, 9, 2), (0, 32, 0)):
            assert CATALOG.metric_exported(stable, version), (stable, version)
    assert CATALOG.metric_exported("vllm:not_a_metric", (0, 32, 0)) is False
    assert CATALOG.metrics["vllm:generation_tokens_total"].kind == "counter"


def test_prices_cover_every_machine_type_and_cloud_run_l4():
    missing = [name for name in CATALOG.machine_types if CATALOG.price(name) is None]
    assert not missing, f"no price for {missing}"
    l4 = CATALOG.price("cloudrun:nvidia-l4")
    assert l4 is not None and l4.region == "us-central1" and "estimate" in l4.note
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", CATALOG.prices_as_of)
    # More GPUs of the same kind never cost less.
    assert CATALOG.price("g2-standard-96").usd_per_hour > CATALOG.price("g2-standard-48").usd_per_hour
    assert CATALOG.price("a2-highgpu-8g").usd_per_hour > CATALOG.price("a2-highgpu-1g").usd_per_hour


# --- malformed data -------------------------------------------------------------------------


def test_malformed_yaml_names_file_and_key(tmp_path, monkeypatch):
    for path in catalog_module.DATA_DIR.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    broken = (tmp_path / "models.yaml").read_text().replace("num_kv_heads: 8\n", "num_kv_heads: eight\n", 1)
    (tmp_path / "models.yaml").write_text(broken)
    monkeypatch.setattr(catalog_module, "DATA_DIR", tmp_path)
    with pytest.raises(CatalogError, match=r"models\.yaml: architectures\.llama-3\.1-8b\.num_kv_heads must be int"):
        load_catalog()


def test_unquoted_version_is_rejected(tmp_path, monkeypatch):
    for path in catalog_module.DATA_DIR.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    text = (tmp_path / "vllm_flags.yaml").read_text().replace("removed_in: 0.18.0", "removed_in: 0.18", 1)
    (tmp_path / "vllm_flags.yaml").write_text(text)
    monkeypatch.setattr(catalog_module, "DATA_DIR", tmp_path)
    with pytest.raises(CatalogError, match=r"vllm_flags\.yaml: flags\.--swap-space\.removed_in must be str"):
        load_catalog()


def test_latest_tag_is_rejected(tmp_path, monkeypatch):
    for path in catalog_module.DATA_DIR.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    text = (tmp_path / "images.yaml").read_text().replace("ref: vllm/vllm-openai:v0.32.0", "ref: vllm/vllm-openai:latest", 1)
    (tmp_path / "images.yaml").write_text(text)
    monkeypatch.setattr(catalog_module, "DATA_DIR", tmp_path)
    with pytest.raises(CatalogError, match=r"images\.yaml: upstream\[0\] must pin a tag"):
        load_catalog()


def test_vllm_defaults_carry_their_sources():
    assert CATALOG.scheduler.sources and CATALOG.fp8_kv_cache.sources
    assert CATALOG.tpu_v6e.gpu_memory_utilization_sources and CATALOG.tpu_v6e.support_matrix_sources
    assert set(CATALOG.fp8_kv_cache.accelerators) <= set(CATALOG.accelerators)
    assert set(CATALOG.tpu_v6e.support_matrix.values()) == {"passing", "failing", "untested"}
    # Each fact cites a public address first: the recipe for the utilization, the matrix for support.
    assert CATALOG.tpu_v6e.gpu_memory_utilization_sources[0].startswith(
        "https://github.com/AI-Hypercomputer/tpu-recipes/"), CATALOG.tpu_v6e.gpu_memory_utilization_sources[0]
    assert CATALOG.tpu_v6e.support_matrix_sources[0].startswith("https://"), CATALOG.tpu_v6e.support_matrix_sources[0]


def test_tpu_support_matrix_status_must_be_known(tmp_path, monkeypatch):
    for path in catalog_module.DATA_DIR.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    text = (tmp_path / "vllm_defaults.yaml").read_text().replace("Qwen/Qwen3-4B: failing", "Qwen/Qwen3-4B: flaky", 1)
    (tmp_path / "vllm_defaults.yaml").write_text(text)
    monkeypatch.setattr(catalog_module, "DATA_DIR", tmp_path)
    with pytest.raises(CatalogError, match=r"vllm_defaults\.yaml: tpu_v6e\.support_matrix values must be passing, failing or untested"):
        load_catalog()


def test_locations_name_only_catalog_accelerators_and_known_zones():
    from stacks.catalog import CATALOG
    from stacks.catalog.locations import locations

    loc = locations()
    cloudrun = {a.cloudrun_gpu for a in CATALOG.accelerators.values() if a.cloudrun_gpu}
    vertex = {a.vertex_accelerator for a in CATALOG.accelerators.values() if a.vertex_accelerator}
    for region in loc.regions.values():
        assert region.zones, f"locations.yaml: {region.name} has no zones"
        assert set(region.cloudrun_gpus) <= cloudrun, f"locations.yaml: {region.name} names unknown Cloud Run GPUs"
        assert set(region.vertex_gpus or ()) <= vertex, f"locations.yaml: {region.name} names unknown Vertex accelerators"
    for key, zones in loc.tpu_zones.items():
        assert CATALOG.accelerators[key].kind == "tpu", f"locations.yaml: tpu_zones.{key} is not a TPU"
        assert all(loc.zone(z) is not None for z in zones), f"locations.yaml: tpu_zones.{key} has unknown zones"
    assert all(source.startswith("https://") for source in loc.sources.values()), loc.sources
    # The committed stacks' locations are in the catalog.
    assert loc.zone("europe-west4-a") and loc.zone("us-east5-b") and "us-central1" in loc.regions
