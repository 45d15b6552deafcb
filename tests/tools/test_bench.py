"""Pure parts of tools.bench: result parsing, ratios, tutorial flags, server command, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline.cli import ToolError
from tools import bench
from tools.bench import (
    BenchError,
    BenchResult,
    Comparison,
    compare,
    parse_bench_result,
    server_command,
    tutorial_argv,
)

# Shape of the file `vllm bench serve --save-result` writes (keys as vLLM 0.32
# writes them for a random-dataset run; values from a tiny CPU run).
VLLM_RESULT = {
    "date": "20250101-000000",
    "endpoint_type": "openai",
    "backend": "openai",
    "label": None,
    "model_id": "google/gemma-3-1b-it",
    "tokenizer_id": "/tmp/model",
    "num_prompts": 16,
    "request_rate": "inf",
    "burstiness": 1.0,
    "max_concurrency": 4,
    "duration": 2.5,
    "completed": 16,
    "failed": 0,
    "total_input_tokens": 512,
    "total_output_tokens": 256,
    "request_throughput": 6.4,
    "request_goodput": None,
    "output_throughput": 102.4,
    "total_token_throughput": 307.2,
    "max_output_tokens_per_s": 120.0,
    "max_concurrent_requests": 4,
    "mean_ttft_ms": 85.25,
    "median_ttft_ms": 80.0,
    "std_ttft_ms": 10.0,
    "p99_ttft_ms": 110.0,
    "mean_tpot_ms": 31.5,
    "median_tpot_ms": 30.0,
    "std_tpot_ms": 2.0,
    "p99_tpot_ms": 36.0,
    "mean_itl_ms": 31.0,
    "median_itl_ms": 30.0,
    "std_itl_ms": 3.0,
    "p99_itl_ms": 40.0,
    "rtfx": 0.0,
    "latencies": [0.6] * 16,
    "queue_times": [0.0] * 16,
}


def test_parse_realistic_vllm_result():
    result = parse_bench_result(VLLM_RESULT)
    assert result == BenchResult(output_tokens_per_s=102.4, mean_ttft_ms=85.25,
                                 mean_tpot_ms=31.5, completed=16)


def test_parse_names_missing_keys():
    data = {k: v for k, v in VLLM_RESULT.items() if k not in ("output_throughput", "completed")}
    with pytest.raises(BenchError, match="lacks output_throughput, completed"):
        parse_bench_result(data)


def test_parse_rejects_non_numeric_metric():
    with pytest.raises(BenchError, match="non-numeric"):
        parse_bench_result({**VLLM_RESULT, "mean_tpot_ms": None})


def test_compare_ratios():
    project = BenchResult(9225.0, 100.0, 11.8, 512)
    tutorial = BenchResult(5367.0, 200.0, 21.9, 512)
    comparison = compare(project, tutorial)
    assert comparison.throughput_ratio == pytest.approx(9225 / 5367)
    assert comparison.throughput_ratio == pytest.approx(1.719, abs=1e-3)
    assert comparison.tpot_ratio == pytest.approx(11.8 / 21.9)
    assert isinstance(comparison, Comparison)


def test_compare_identical_runs_is_one():
    r = BenchResult(10.0, 1.0, 2.0, 4)
    assert compare(r, r) == Comparison(1.0, 1.0)


@pytest.mark.parametrize("tutorial", [BenchResult(0.0, 1.0, 2.0, 0), BenchResult(5.0, 1.0, 0.0, 4)])
def test_compare_refuses_empty_tutorial_run(tutorial):
    with pytest.raises(BenchError, match="no ratio"):
        compare(BenchResult(10.0, 1.0, 2.0, 4), tutorial)


def rendered(name: str, stack: str = "prod") -> list[str]:
    return list(bench.load_deployment(stack, name).container.argv)


def flags_of(argv: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for token in argv:
        if token.startswith("--"):
            name, _, value = token.partition("=")
            out[name] = value or None
    return out


def test_tutorial_argv_is_the_tutorials_full_flag_set_for_the_8b():
    argv = rendered("llama-8b")
    tutorial = flags_of(tutorial_argv(argv))
    # The tutorial's deploy_model_vllm for Llama 3.1 8B: every engine flag it passes (but the V0-only swap space).
    assert tutorial == {
        "--host": "0.0.0.0", "--port": "8080", "--model": "meta-llama/Llama-3.1-8B-Instruct",
        "--tensor-parallel-size": "1", "--gpu-memory-utilization": "0.9", "--max-model-len": "4096",
        "--dtype": "auto", "--max-loras": "1", "--max-cpu-loras": "8", "--max-num-seqs": "256",
        "--disable-log-stats": None, "--enforce-eager": None, "--enable-lora": None,
        # The stack's pinned weights stay pinned in the comparison run (same weights on both sides).
        "--revision": flags_of(argv)["--revision"],
    }, tutorial
    assert tutorial_argv(argv)[:3] == argv[:3]  # same server module
    # The project's own flags do not leak into the tutorial's run: no cap there, 256 here.
    assert "--max-num-seqs" not in flags_of(argv)


def test_tutorial_argv_for_llama_vision_uses_12_sequences_and_no_lora():
    tutorial = flags_of(tutorial_argv(["python", "-m", "vllm.entrypoints.api_server", "--host=0.0.0.0", "--port=8080",
                                       "--model=meta-llama/Llama-3.2-11B-Vision-Instruct", "--tensor-parallel-size=1",
                                       "--max-num-seqs=12", "--max-model-len=2048"], vision=True))
    assert tutorial["--max-num-seqs"] == "12" and tutorial["--max-model-len"] == "4096"
    assert "--enable-lora" not in tutorial and "--enforce-eager" in tutorial


def test_tutorial_argv_keeps_listener_model_and_parallelism_whatever_the_spelling():
    argv = ["python3", "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", "8000",
            "--model", "/m", "--tensor-parallel-size", "8", "--max-num-seqs", "64", "--kv-cache-dtype=fp8",
            "--no-enable-prefix-caching"]
    tutorial = flags_of(tutorial_argv(argv))
    assert tutorial["--host"] == "127.0.0.1" and tutorial["--model"] == "/m" and tutorial["--tensor-parallel-size"] == "8"
    assert tutorial["--max-num-seqs"] == "256"
    assert "--kv-cache-dtype" not in tutorial and "--no-enable-prefix-caching" not in tutorial
    names = [t.split("=", 1)[0] for t in tutorial_argv(argv) if t.startswith("--")]
    assert len(names) == len(set(names))


def test_tutorial_argv_does_not_mutate_input():
    argv = rendered("llama-8b")
    before = list(argv)
    tutorial_argv(argv)
    assert argv == before


def test_vllm_defaults_argv_keeps_only_what_vllm_cannot_default():
    argv = rendered("llama-8b")
    defaults = flags_of(bench.vllm_defaults_argv(argv))
    expected = {"--host", "--port", "--model", "--tensor-parallel-size", "--max-model-len"}
    assert set(defaults) == expected | ({"--served-model-name", "--revision"} & set(flags_of(argv)))


def test_server_command_cpu_swaps_model_host_port_and_adds_dummy_load():
    rendered = ["python3", "-m", "vllm.entrypoints.openai.api_server", "--host=0.0.0.0",
                "--port=8080", "--model=google/gemma-3-1b-it",
                "--served-model-name=google/gemma-3-1b-it", "--tensor-parallel-size=1",
                "--gpu-memory-utilization=0.9", "--max-model-len=8192", "--max-num-seqs=256"]
    argv, env, changes = server_command(
        rendered, {"HF_HOME": "/model-cache", "HF_HUB_OFFLINE": "1"}, python="/py",
        model_dir="/tmp/model", port=4321, device_kept=False, max_model_len=1024)
    assert argv[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    assert "--host=127.0.0.1" in argv and "--port=4321" in argv
    assert "--model=/tmp/model" in argv and "--max-model-len=1024" in argv
    assert "--max-num-seqs=256" in argv
    assert not any(a.startswith("--gpu-memory-utilization") for a in argv)
    assert argv[-2:] == ["--load-format", "dummy"]
    assert env == {"HF_HUB_OFFLINE": "1"}
    assert any("HF_HOME" in c for c in changes)


def test_server_command_replaces_the_streamer_with_the_dummy_loader():
    """A deployment streaming the bucket copy: the dummy loader replaces the streamer and its settings."""
    rendered = ["python3", "-m", "vllm.entrypoints.openai.api_server", "--host=0.0.0.0", "--port=8080",
                "--model=gs://b/models/google/gemma-3-1b-it/abc", "--max-model-len=8192",
                "--load-format=runai_streamer", '--model-loader-extra-config={"concurrency":16}']
    argv, _, changes = server_command(rendered, {"HF_HUB_OFFLINE": "1"}, python="/py", model_dir="/tmp/model",
                                      port=4321, device_kept=False, max_model_len=1024)
    assert [a for a in argv if "load-format" in a or "loader" in a] in (["--load-format=dummy"], ["--load-format"]), argv
    assert "dummy" in argv or "--load-format=dummy" in argv, argv
    assert not any(a.startswith("--model-loader-extra-config") for a in argv), argv
    assert any("--model-loader-extra-config" in c for c in changes), changes


def test_server_command_gpu_keeps_device_flags_and_uses_openai_server():
    rendered = ["python", "-m", "vllm.entrypoints.api_server", "--host=0.0.0.0", "--port=8080",
                "--model=meta-llama/Llama-3.1-8B-Instruct", "--tensor-parallel-size=1",
                "--gpu-memory-utilization=0.9", "--max-model-len=4096", "--max-num-seqs=31"]
    argv, env, changes = server_command(
        rendered, {"MODEL_ID": "x"}, python="/gpu/python", model_dir="/tmp/model",
        port=4321, device_kept=True, max_model_len=1024)
    assert argv[:3] == ["/gpu/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert "--gpu-memory-utilization=0.9" in argv and "--max-model-len=4096" in argv
    assert "--host=127.0.0.1" in argv and "--port=4321" in argv and "--model=/tmp/model" in argv
    assert argv.count("--load-format") == 1
    assert env == {"MODEL_ID": "x"}
    assert any("/v1/completions" in c for c in changes)


def test_bench_args_fixed_random_workload():
    args = bench.bench_args(base_url="http://127.0.0.1:1", served_model="m", tokenizer="/t",
                            input_len=512, output_len=256, num_prompts=512, concurrency=128,
                            result_dir="/r", result_filename="f.json")
    joined = " ".join(args)
    for part in ("--dataset-name random", "--random-input-len 512", "--random-output-len 256",
                 "--num-prompts 512", "--max-concurrency 128", "--ignore-eos", "--seed 0",
                 "--save-result", "--result-dir /r"):
        assert part in joined


def test_tiny_architecture_is_small_llama():
    arch = bench.architecture_of(None, tiny=True)
    assert arch["architecture"] == "LlamaForCausalLM"
    assert (arch["hidden_size"], arch["num_layers"], arch["vocab_size"]) == (256, 2, 1024)


def test_unknown_deployment_is_refused(capsys):
    assert bench.main(["dev", "no-such-deployment", "--tiny"]) == 2
    err = capsys.readouterr().err
    assert "unknown deployment 'no-such-deployment' in stack 'dev'" in err
    assert "gemma-1b" in err  # lists what exists


def test_unknown_stack_is_refused(capsys):
    assert bench.main(["nostack", "gemma-1b"]) == 2
    err = capsys.readouterr().err
    assert "unknown stack 'nostack'" in err and "dev" in err


def test_a_workload_beyond_the_context_is_invalid_input(capsys):
    # The exit status comes with the error (offline.cli.ToolError), not from its wording.
    assert bench.main(["dev", "gemma-1b", "--input-len", "10000000"]) == 2
    assert "exceed the model's context" in capsys.readouterr().err


def test_a_failed_run_exits_1():
    error = bench.BenchError("the tutorial run produced no output tokens; no ratio to report")
    assert error.status == 1 and isinstance(error, ToolError)


def test_bad_workload_is_refused(capsys):
    assert bench.main(["dev", "gemma-1b", "--num-prompts", "0"]) == 2
    assert "--num-prompts must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--compare-tutorial", "--compare-seed"])
def test_compare_flag_has_both_spellings(flag):
    assert bench.build_parser().parse_args(["dev", "gemma-1b", flag]).compare_tutorial is True, flag
    assert bench.build_parser().parse_args(["dev", "gemma-1b"]).compare_tutorial is False
    assert bench.build_parser().parse_args(["dev", "gemma-1b", "--compare-defaults"]).compare_defaults is True


def test_kv_blocks_fix_the_same_budget_on_every_run():
    # The L4 emulation of the README's measurement: one KV budget for the project, the tutorial and vLLM's defaults.
    argv = rendered("llama-8b")
    runs = [argv, tutorial_argv(argv), bench.vllm_defaults_argv(argv)]
    for run in runs:
        fixed = flags_of(bench.with_kv_blocks(run, 2007))
        assert fixed["--num-gpu-blocks-override"] == "2007", fixed
        assert {k: v for k, v in fixed.items() if k != "--num-gpu-blocks-override"} == flags_of(run)


@pytest.mark.parametrize("args", [["--kv-blocks", "2007"], ["--device-kept", "--kv-blocks", "0"]])
def test_kv_blocks_need_a_gpu_and_a_positive_count(args, capsys):
    # On the CPU build the flag would size nothing: refused before anything starts.
    assert bench.main(["dev", "gemma-1b", *args]) == 2
    assert "--kv-blocks needs a positive block count and --device-kept" in capsys.readouterr().err


def test_throughput_targets_are_the_issues():
    verdicts = bench.target_verdicts({"tutorial": Comparison(throughput_ratio=1.59, tpot_ratio=0.5),
                                      "defaults": Comparison(throughput_ratio=1.0, tpot_ratio=1.0)})
    assert verdicts["tutorial"] == {"throughput_ratio": 1.59, "target": 1.6, "met": False}
    assert verdicts["defaults"]["met"] is True and verdicts["defaults"]["target"] == 1.0


def test_the_gpu_command_is_documented_and_parses():
    # The docstring's command for a GPU machine is the one the README gives, and the parser accepts it.
    doc = bench.__doc__ or ""
    start = doc.index("python -m tools.bench prod llama-8b --device-kept")
    command = " ".join(doc[start:].split("\n\n")[0].replace("\\\n", " ").split())
    args = bench.build_parser().parse_args(command.split()[3:])
    assert (args.device_kept, args.compare_tutorial, args.compare_defaults, args.kv_blocks) == (True, True, True, 2007)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert " ".join(readme.replace("\\\n", " ").split()).count(command) == 1, command
