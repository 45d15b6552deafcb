"""The vLLM commands the stacks render, run for real (CPU build, tiny random Llama).

For one deployment per serving platform (prod ``gemma-1b`` on Cloud Run, prod
``llama-70b`` on GKE/TPU) the rendered argv and environment are rewritten for
this machine with ``replace_for_cpu`` / ``replace_env_for_cpu``. Every rewrite is
listed here explicitly: a flag the renderer starts emitting that the rewrite
touches changes the list and fails the test by name, and a flag it does not
touch reaches the real server, whose parser decides. The served model name,
the batch size and everything else are kept exactly as rendered.

One server start per deployment (about a minute each on a 2-core machine);
every check of a deployment runs against that one server.
"""

from __future__ import annotations

import dataclasses
import re
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from components.observability import Chart
from offline.plan import ROOT, read_stack_file
from stacks import monitoring
from stacks.config import load
from stacks.resolve import resolve_stack
from stacks.vllm import render_server
from tests.stacks.test_monitoring import metric_names
from tools.loadtest import LoadSettings, run_benchmark
from tools.localvllm import (
    CPU_MAX_MODEL_LEN,
    LocalServer,
    check_server_args,
    free_port,
    replace_env_for_cpu,
    replace_for_cpu,
)

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 300  # a cold CPU start takes 40-80 s on an idle 2-core machine, several times that under load
PROMPT = "Write a story about san francisco"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
# Deployments whose rendered command is started for real: one per OpenAI-server platform.
DEPLOYMENTS = {"cloudrun": "gemma-1b", "gke": "llama-70b"}


def _expected_argv_changes(name: str, python: Path, model: Path, port: int, rendered_model: str) -> list[str]:
    """Every rewrite ``replace_for_cpu`` must make to the prod render of *name*, in order."""
    python_change = f"python executable python3 -> {python}"
    host_change = "--host 0.0.0.0 -> 127.0.0.1"
    len_change = f"--max-model-len 8192 -> {CPU_MAX_MODEL_LEN} (tiny model's context)"
    if name == "gemma-1b":
        return [
            python_change,
            host_change,
            f"--port 8080 -> {port}",
            f"--model {rendered_model} -> {model}",
            "dropped --gpu-memory-utilization 0.9 (CPU backend sizes the KV cache with "
            "VLLM_CPU_KVCACHE_SPACE)",
            len_change,
        ]
    if name == "llama-70b":
        return [
            python_change,
            host_change,
            f"--port 8000 -> {port}",
            f"--model {rendered_model} -> {model}",
            "--tensor-parallel-size 8 -> 1 (one CPU worker)",
            "dropped --gpu-memory-utilization 0.98 (CPU backend sizes the KV cache with "
            "VLLM_CPU_KVCACHE_SPACE)",
            len_change,
        ]
    raise AssertionError(f"no expected rewrite list for {name}")


_CACHE_ROOT_DROPPED = ("dropped env VLLM_CACHE_ROOT (the deployment's compile-cache volume; the local server keeps "
                       "its own cache)")
EXPECTED_ENV_CHANGES = {
    "gemma-1b": [_CACHE_ROOT_DROPPED],  # HF_HUB_OFFLINE=1 reaches the server unchanged
    "llama-70b": ["dropped env VLLM_XLA_CACHE_PATH (accelerator-specific)", _CACHE_ROOT_DROPPED],
}
# Rendered flags that must reach the local server untouched (no --max-num-seqs: vLLM's own default runs).
# Both deployments serve the weights-copy job's bucket copy with the Run:ai streamer: here the real
# server loads the tiny model's safetensors through the streamer, with the rendered loader settings.
EXPECTED_KEPT_ARGS = {
    "gemma-1b": ["--served-model-name=google/gemma-3-1b-it", "--tensor-parallel-size=1", "--load-format=runai_streamer",
                 '--model-loader-extra-config={"concurrency":16,"memory_limit":8589934592}'],
    "llama-70b": ["--served-model-name=meta-llama/Llama-3.1-70B", "--load-format=runai_streamer",
                  '--model-loader-extra-config={"concurrency":16}'],
}


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read().decode()


@pytest.fixture(scope="module")
def prod():
    values, secrets = read_stack_file(ROOT / "Pulumi.prod.yaml")
    return resolve_stack(load(values, secrets, source="Pulumi.prod.yaml", stack="prod"))


@dataclasses.dataclass
class Rendered:
    name: str
    deployment: object
    server: LocalServer
    client: openai.OpenAI


@pytest.fixture(scope="module", params=sorted(DEPLOYMENTS.items()), ids=lambda p: f"{p[0]}-{p[1]}")
def rendered(request, prod, vllm_python, tiny_model, tmp_path_factory):
    platform, name = request.param
    d = prod.deployments[name]
    assert d.platform.value == platform
    port = free_port()
    argv, argv_changes = replace_for_cpu(d.container.argv, model_path=str(tiny_model), port=port,
                                         python=vllm_python)
    env, env_changes = replace_env_for_cpu(d.container.env)
    print(f"\n[integration] {name} ({platform}) rendered: {d.container.argv} env {dict(d.container.env)}")
    for change in [*argv_changes, *env_changes]:
        print(f"[integration]   rewrite: {change}")
    rendered_model = next(a for a in d.container.args if a.startswith("--model=")).removeprefix("--model=")
    assert rendered_model.startswith("gs://") and rendered_model.endswith(f"/{d.config.model_revision}"), rendered_model
    assert argv_changes == _expected_argv_changes(name, vllm_python, tiny_model, port, rendered_model)
    assert env_changes == EXPECTED_ENV_CHANGES[name]
    assert argv[:3] == [str(vllm_python), "-m", SERVER_MODULE]
    for arg in EXPECTED_KEPT_ARGS[name]:
        assert arg in argv, f"{arg} did not reach the local server: {argv}"

    log = tmp_path_factory.mktemp(f"server-log-{name}") / "vllm.log"
    with LocalServer(argv, env, port, start_timeout=START_TIMEOUT_S, log_path=log) as srv:
        print(f"[integration] {name}: vLLM healthy after {srv.startup_seconds:.1f} s "
              f"on {srv.base_url}")
        # The weights went through the Run:ai streamer with the rendered loader settings (vLLM logs it).
        assert "Loading safetensors using Runai Model Streamer" in log.read_text(errors="replace"), \
            f"{name}: the server did not load through the streamer; see {log}"
        client = openai.OpenAI(base_url=f"{srv.base_url}/v1", api_key="unused", timeout=120,
                               max_retries=0)
        yield Rendered(name, d, srv, client)
        stopping = time.monotonic()
    print(f"\n[integration] {name}: vLLM stopped in {time.monotonic() - stopping:.1f} s")


def test_health_and_served_model_name(rendered):
    d = rendered.deployment
    status, _ = _get(f"{rendered.server.base_url}{d.container.health_path}")
    assert status == 200
    assert [m.id for m in rendered.client.models.list().data] == [d.container.served_model_name]


def test_completion_and_chat_through_openai_client(rendered):
    name = rendered.deployment.container.served_model_name
    started = time.monotonic()
    completion = rendered.client.completions.create(model=name, prompt=PROMPT, max_tokens=16,
                                                    temperature=0)
    assert completion.model == name
    assert isinstance(completion.choices[0].text, str)
    assert 0 < completion.usage.completion_tokens <= 16
    chat = rendered.client.chat.completions.create(
        model=name, max_tokens=16, temperature=0,
        messages=[{"role": "user", "content": "Hello! How are you today?"}])
    assert chat.model == name
    assert chat.choices[0].message.role == "assistant"
    assert isinstance(chat.choices[0].message.content, str)
    assert 0 < chat.usage.completion_tokens <= 16
    print(f"[integration] {rendered.name}: completion + chat took "
          f"{time.monotonic() - started:.2f} s")


def test_metrics_expose_the_rendered_scaling_metric(rendered):
    d = rendered.deployment
    status, text = _get(f"{rendered.server.base_url}/metrics")
    assert status == 200
    metric = getattr(d.scaling, "metric", None)
    if metric is None:
        pytest.skip(f"{rendered.name} renders no metric-based autoscaler")
    served = re.escape(d.container.served_model_name)
    assert re.search(rf'^{re.escape(metric)}{{[^}}]*model_name="{served}"', text, re.M), (
        f"{metric} for {d.container.served_model_name} missing from /metrics")


def _monitoring_queries(prod, d) -> list[str]:
    """Every PromQL query of the deployment's dashboard section and alert policies, as rendered."""
    if d.platform.value == "cloudrun":
        target = monitoring.cloudrun_target(d, prod.config, service_name=f"{prod.config.prefix}-{d.name}")
    else:
        target = monitoring.gke_target(d, prod.config, "cluster", namespace="ns", job=f"vllm-{d.name}",
                                       container="vllm")
    section = monitoring.section(d, target)
    queries = [s.query for w in section.widgets if isinstance(w, Chart) for s in w.series]
    queries += [a.query for a in monitoring.alerts(d, prod.config, target)]
    plain = [q for q in queries if isinstance(q, str)]  # plain selectors in, plain queries out
    assert len(plain) == len(queries), f"{d.name}: some queries are still Outputs"
    return plain


def test_metrics_the_dashboard_and_alerts_query_are_exported(prod, rendered):
    """Each vLLM metric the deployment's panels and alerts name, parsed out of the rendered PromQL,
    is on the real server's /metrics for the served model (histograms by their _bucket series)."""
    d = rendered.deployment
    name = d.container.served_model_name
    # Counters and histograms get their series once a request finished; do not depend on test order.
    rendered.client.completions.create(model=name, prompt=PROMPT, max_tokens=4, temperature=0)
    status, text = _get(f"{rendered.server.base_url}/metrics")
    assert status == 200
    queried = {n for q in _monitoring_queries(prod, d) for n in metric_names(q) if n.startswith("vllm:")}
    assert len(queried) >= 8, f"{rendered.name}: expected the vLLM panels' metrics, got {sorted(queried)}"
    served = re.escape(name)
    for metric in sorted(queried):
        assert re.search(rf'^{re.escape(metric)}{{[^}}]*model_name="{served}"', text, re.M), \
            f"{rendered.name}: {metric} (queried by the dashboard or an alert) missing from /metrics"
    # The error-ratio panel and alert select finished_reason="error".
    finished = monitoring.vllm_metric_names(d)["finished_requests"]
    assert re.search(rf'^{re.escape(str(finished))}{{[^}}]*finished_reason="error"', text, re.M), \
        f"{rendered.name}: no finished_reason=\"error\" series on {finished}"
    print(f"[integration] {rendered.name}: {len(queried)} queried vLLM metrics on /metrics: {sorted(queried)}")


def test_bounded_load_generates_tokens(rendered, vllm_python, tiny_model):
    settings = LoadSettings(url=rendered.server.base_url, model=rendered.deployment.container.served_model_name,
                            tokenizer=str(tiny_model), num_prompts=8, concurrency=4, input_len=32, output_len=16,
                            timeout_s=300)
    result = run_benchmark(settings, vllm_python)
    print(f"[integration] {rendered.name}: vLLM's serving benchmark, 8 requests at concurrency 4:\n{result.summary()}")
    assert result.failed == 0, result.error_samples
    assert result.completed == 8
    assert result.output_throughput > 0


def test_flag_the_pinned_vllm_rejects_is_dropped_and_would_fail(prod, vllm_python, tiny_model):
    d = prod.deployments[DEPLOYMENTS["cloudrun"]]
    settings = dataclasses.replace(d.vllm, swap_space=4)

    # The real pinned image: the renderer drops the flag and reports it.
    pinned = render_server(settings, d.image, port=d.container.port, env=d.container.env)
    assert pinned.rejected_flags == ("--swap-space",)
    assert not [a for a in pinned.args if a.startswith("--swap-space")]

    # An image claiming an older vLLM keeps it; the installed parser must refuse that render.
    old_image = dataclasses.replace(d.image, vllm_version=(0, 9, 2))
    old = render_server(settings, old_image, port=d.container.port, env=d.container.env)
    assert old.rejected_flags == ()
    assert "--swap-space=4" in old.args

    port = free_port()
    arg_lists = []
    for command in (pinned, old):
        argv, _ = replace_for_cpu(command.argv, model_path=str(tiny_model), port=port,
                                  python=vllm_python)
        assert argv[1:3] == ["-m", SERVER_MODULE]
        arg_lists.append(argv[3:])
    started = time.monotonic()
    pinned_error, old_error = check_server_args(vllm_python, arg_lists)
    print(f"[integration] parsed both renders in {time.monotonic() - started:.1f} s: "
          f"{old_error}")
    assert pinned_error is None
    assert old_error is not None and "unrecognized arguments" in old_error
    assert "--swap-space" in old_error
