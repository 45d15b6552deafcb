"""A real vLLM server (CPU build, tiny random Llama) answering the routes we rely on."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from tools.loadtest import LoadSettings, run_benchmark
from tools.localvllm import LocalServer, ServerStartError, check_server_args, free_port, replace_for_cpu
from tools.localvllm.server import _group_alive

pytestmark = pytest.mark.integration

SERVED_NAME = "tiny"
START_TIMEOUT_S = 300  # a cold CPU start takes 40-80 s on an idle 2-core machine, several times that under load
PROMPT = "Write a story about san francisco"


def _server_argv(python: Path, model: Path, port: int, *extra: str) -> list[str]:
    return [str(python), "-m", "vllm.entrypoints.openai.api_server",
            "--host", "127.0.0.1", "--port", str(port), "--model", str(model),
            "--max-model-len", "1024", "--max-num-seqs", "8",
            "--served-model-name", SERVED_NAME, *extra]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read().decode()


@pytest.fixture(scope="module")
def server(vllm_python, tiny_model, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server-log") / "vllm.log"
    with LocalServer(_server_argv(vllm_python, tiny_model, port), {}, port,
                     start_timeout=START_TIMEOUT_S, log_path=log) as srv:
        print(f"\n[integration] vLLM healthy after {srv.startup_seconds:.1f} s on {srv.base_url}")
        yield srv
        stopping = time.monotonic()
    print(f"\n[integration] vLLM stopped in {time.monotonic() - stopping:.1f} s")
    assert not _group_alive(srv.proc.pid), "server processes outlived stop()"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused",
                         timeout=120, max_retries=0)


def test_health_and_ping(server):
    assert _get(f"{server.base_url}/health")[0] == 200
    # Vertex AI's custom-container health route is commonly pointed at /ping.
    assert _get(f"{server.base_url}/ping")[0] == 200


def test_models_lists_the_served_name(client):
    assert SERVED_NAME in [model.id for model in client.models.list().data]


def test_completion_through_openai_client(client):
    started = time.monotonic()
    completion = client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=16,
                                           temperature=0)
    print(f"[integration] one 16-token completion took {time.monotonic() - started:.2f} s")
    assert completion.model == SERVED_NAME
    assert isinstance(completion.choices[0].text, str)
    assert completion.choices[0].finish_reason in ("length", "stop")
    assert 0 < completion.usage.completion_tokens <= 16
    assert completion.usage.prompt_tokens > 0


def test_chat_completion_through_openai_client(client):
    chat = client.chat.completions.create(
        model=SERVED_NAME, max_tokens=16, temperature=0,
        messages=[{"role": "system", "content": "You are terse."},
                  {"role": "user", "content": "Hello! How are you today?"}])
    assert chat.choices[0].message.role == "assistant"
    assert isinstance(chat.choices[0].message.content, str)
    assert 0 < chat.usage.completion_tokens <= 16
    # The chat template wrapped both messages in header tokens.
    assert chat.usage.prompt_tokens > 10


def test_metrics_expose_autoscaling_gauges(server, client):
    client.completions.create(model=SERVED_NAME, prompt=PROMPT, max_tokens=4)
    status, text = _get(f"{server.base_url}/metrics")
    assert status == 200
    for name in ("vllm:num_requests_waiting", "vllm:num_requests_running",
                 "vllm:kv_cache_usage_perc"):
        assert re.search(rf'^{name}{{[^}}]*model_name="{SERVED_NAME}"', text, re.M), name
    generated = re.search(r'^vllm:generation_tokens_total{[^}]*} ([0-9.e+]+)$', text, re.M)
    assert generated and float(generated.group(1)) > 0
    # Renamed away before this version; an HPA on it would see nothing.
    assert "vllm:gpu_cache_usage_perc" not in text


def test_bounded_load_generates_tokens(server, vllm_python, tiny_model):
    settings = LoadSettings(url=server.base_url, model=SERVED_NAME, tokenizer=str(tiny_model), num_prompts=8,
                            concurrency=4, input_len=32, output_len=16, timeout_s=300)
    result = run_benchmark(settings, vllm_python)
    print(f"[integration] vLLM's serving benchmark, 8 requests at concurrency 4:\n{result.summary()}")
    assert result.failed == 0, result.error_samples
    assert result.completed == 8
    assert result.output_throughput > 0
    assert result.duration_s < 300


def test_swap_space_is_rejected_by_argparse(vllm_python, tiny_model, tmp_path):
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ServerStartError) as excinfo:
        with LocalServer(_server_argv(vllm_python, tiny_model, port, "--swap-space", "4"), {},
                         port, start_timeout=START_TIMEOUT_S, log_path=tmp_path / "vllm.log"):
            pytest.fail("server with --swap-space became healthy")
    elapsed = time.monotonic() - started
    print(f"[integration] --swap-space rejected after {elapsed:.1f} s")
    assert excinfo.value.returncode not in (None, 0)
    assert "unrecognized arguments" in str(excinfo.value)
    assert "--swap-space" in excinfo.value.log_tail
    assert elapsed < 90


def test_tutorial_gke_args_parse_after_cpu_replacement(vllm_python, tiny_model):
    # The GKE tutorial's container args, rewritten for this machine, must be
    # accepted by the installed vLLM's own parser; --swap-space must not.
    tutorial_argv = ["python3", "-m", "vllm.entrypoints.openai.api_server", "--host=0.0.0.0",
            "--port=8000", "--tensor-parallel-size=8", "--max-model-len=8192",
            "--model=meta-llama/Meta-Llama-3.1-70B", "--download-dir=/data"]
    argv, changes = replace_for_cpu(tutorial_argv, model_path=str(tiny_model), port=8000,
                                    python=vllm_python)
    assert argv[:3] == [str(vllm_python), "-m", "vllm.entrypoints.openai.api_server"]
    assert len(changes) == 6  # python, host, tensor-parallel, max-model-len, model, download-dir
    accepted, swap = check_server_args(vllm_python, [argv[3:], [*argv[3:], "--swap-space=4"]])
    assert accepted is None
    assert swap is not None and "unrecognized arguments: --swap-space" in swap
