"""vLLM's own drain on SIGTERM, as the GKE deployment renders it, on the real server (CPU build, tiny Llama).

The prod ``llama-70b`` command carries ``--shutdown-timeout=<gke.drainSeconds>``: a replica Kubernetes
stops (after the preStop sleep) finishes the requests it is generating instead of aborting them. Here the
rendered command runs for real; a long streamed completion is under way when the server gets SIGTERM,
and must still end with every token it asked for. The same command with ``--shutdown-timeout=0`` (vLLM's
default) is the control: that stream is cut short, so the test can tell the two apart.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import openai
import pytest

from offline.plan import ROOT, read_stack_file
from stacks.config import load
from stacks.resolve import resolve_stack
from tools.localvllm import LocalServer, free_port, replace_env_for_cpu, replace_for_cpu

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 300
MAX_TOKENS = 600  # long enough to be mid-stream when SIGTERM arrives on a 2-core machine


def _rendered_gke_argv(vllm_python: Path, tiny_model: Path, port: int, drain: int | None) -> tuple[list[str], dict]:
    values, secrets = read_stack_file(ROOT / "Pulumi.prod.yaml")
    d = resolve_stack(load(values, secrets, source="Pulumi.prod.yaml", stack="prod")).deployments["llama-70b"]
    assert d.vllm.shutdown_timeout is not None, "prod llama-70b renders no drain"
    argv, _ = replace_for_cpu(d.container.argv, model_path=str(tiny_model), port=port, python=vllm_python)
    flag = f"--shutdown-timeout={d.vllm.shutdown_timeout}"
    assert flag in argv, f"the rendered drain flag did not reach the local server: {argv}"
    if drain is not None:
        argv = [f"--shutdown-timeout={drain}" if a == flag else a for a in argv]
    env, _ = replace_env_for_cpu(d.container.env)
    return argv, env


def _stream_through_sigterm(server: LocalServer, model: str,
                            timeout: float) -> tuple[int, str | None, float, Exception | None]:
    """Stream a completion, SIGTERM the server after the first chunk.

    Returns the tokens generated, the finish reason, the seconds the server took to exit after the stream
    ended, and the error that ended the stream early, if one did.

    Without a drain the engine stops at once but the HTTP server waits for open connections, so the stream
    stalls: ``timeout`` ends it on the client side (as a client's own timeout, or the kubelet's SIGKILL
    after the grace period, would in the cluster)."""
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", timeout=timeout, max_retries=0)
    stream = client.completions.create(model=model, prompt="Once upon a time", max_tokens=MAX_TOKENS,
                                       temperature=0, stream=True, stream_options={"include_usage": True},
                                       extra_body={"ignore_eos": True})
    tokens = 0
    finish: str | None = None
    error: Exception | None = None
    signalled = threading.Event()
    assert server.proc is not None
    try:
        for chunk in stream:
            if not signalled.is_set():
                os.kill(server.proc.pid, signal.SIGTERM)  # what the kubelet sends after preStop
                signalled.set()
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
    except Exception as stalled:  # the client's transport errors (timeouts, broken streams) have no common base here
        error = stalled  # an aborted stream stalls or breaks: tokens stay short of MAX_TOKENS
    stopping = time.monotonic()
    server.proc.wait(timeout=180)
    return tokens, finish, time.monotonic() - stopping, error


@pytest.mark.parametrize("drain", [None, 0], ids=["rendered-drain", "control-abort"])
def test_sigterm_drains_running_requests_with_the_rendered_flag(drain, vllm_python, tiny_model, tmp_path):
    port = free_port()
    argv, env = _rendered_gke_argv(vllm_python, tiny_model, port, drain)
    served = next(a.split("=", 1)[1] for a in argv if a.startswith("--served-model-name="))
    with LocalServer(argv, env, port, start_timeout=START_TIMEOUT_S, log_path=tmp_path / "vllm.log",
                     stop_timeout=60) as server:
        tokens, finish, exit_seconds, error = _stream_through_sigterm(server, served,
                                                                      timeout=300 if drain is None else 30)
        log = server.log_text()
    print(f"\n[integration] drain={drain}: {tokens} tokens, finish {finish!r}, exited {exit_seconds:.1f} s after the "
          f"stream ended; stream error: {error!r}")
    if drain is None:
        assert error is None, f"the stream broke during the drain: {error!r}"
        assert "mode=drain" in log, "vLLM did not log a drain on SIGTERM:\n" + log[-3000:]
        assert (tokens, finish) == (MAX_TOKENS, "length"), \
            f"the running request was not finished: {tokens} of {MAX_TOKENS} tokens, finish {finish!r}"
    else:
        assert "mode=abort" in log, "vLLM did not log an abort on SIGTERM:\n" + log[-3000:]
        assert tokens < MAX_TOKENS, "with --shutdown-timeout=0 the request still finished; the test cannot tell"
