"""tools.loadtest against the real vLLM CPU server, end to end through its command line: vLLM's own
serving benchmark runs in the vLLM venv, reports TTFT, TPOT, output throughput and goodput, and
the server's own counters agree with the request count; an API key travels on stdin; requests the
server refuses end the run with status 1; the timeout bounds the whole run.

Runs are kept small (a few requests of 16 tokens): the CPU server is slow and cores are shared."""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request
from pathlib import Path

import pytest

from tools.loadtest import main
from tools.localvllm import LocalServer, free_port

pytestmark = pytest.mark.integration

SERVED_NAME = "tiny"
MAX_MODEL_LEN = 1024
START_TIMEOUT_S = 300
KEY = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def server(vllm_python: Path, tiny_model: Path, tmp_path_factory):
    port = free_port()
    argv = [str(vllm_python), "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", str(port),
            "--model", str(tiny_model), "--served-model-name", SERVED_NAME, "--max-model-len", str(MAX_MODEL_LEN),
            "--max-num-seqs", "8"]
    log = tmp_path_factory.mktemp("loadtest-server") / "vllm.log"
    with LocalServer(argv, {"VLLM_API_KEY": KEY}, port, start_timeout=START_TIMEOUT_S, log_path=log) as srv:
        print(f"\n[integration] vLLM healthy after {srv.startup_seconds:.1f} s on {srv.base_url}")
        yield srv


def _successes(base_url: str) -> float:
    """vLLM's own count of finished requests (every finished_reason), from /metrics."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=30) as response:
        text = response.read().decode()
    counts = re.findall(r'^vllm:request_success_total\{[^}]*model_name="tiny"[^}]*\} ([0-9.e+]+)$', text, re.M)
    assert counts, "vllm:request_success_total missing from /metrics"
    return sum(float(c) for c in counts)


def _loadtest(capsys, server, vllm_python: Path, tiny_model: Path, *extra: str) -> tuple[int, str, str]:
    status = main(["--url", server.base_url, "--model", SERVED_NAME, "--tokenizer", str(tiny_model),
                   "--header", f"Authorization: Bearer {KEY}", "--vllm-python", str(vllm_python), *extra])
    out, err = capsys.readouterr()
    assert KEY not in out + err, "tools.loadtest printed the API key"
    return status, out, err


def test_bounded_load_reports_token_level_figures(capsys, server, vllm_python, tiny_model):
    before = _successes(server.base_url)
    started = time.monotonic()
    status, out, err = _loadtest(capsys, server, vllm_python, tiny_model, "--num-prompts", "6", "--concurrency", "3",
                                 "--input-len", "32", "--output-len", "16", "--goodput", "ttft:60000", "tpot:60000",
                                 "--timeout", "300", "--json")
    elapsed = time.monotonic() - started
    assert status == 0, f"exit {status}\n{out}\n{err}"
    result = json.loads(out)
    print(f"[integration] tools.loadtest, 6 requests at concurrency 3, in {elapsed:.1f} s: {json.dumps(result)}")
    assert result["completed"] == 6 and result["failed"] == 0, result
    # random prompts ignore EOS: exactly --output-len tokens each.
    assert result["total_output_tokens"] == 6 * 16, result
    assert result["output_throughput"] > 0 and result["request_throughput"] > 0, result
    for metric in ("ttft", "tpot", "itl", "e2el"):
        figures = result[metric]
        assert 0 < figures["median_ms"] <= figures["p99_ms"], f"{metric}: {figures}"
    assert result["ttft"]["median_ms"] < result["e2el"]["median_ms"], "TTFT not below end-to-end latency"
    assert result["goodput"] is not None and result["goodput"] > 0, f"goodput: {result['goodput']}"
    assert _successes(server.base_url) - before == 6, "the server did not count the 6 requests the report claims"
    assert elapsed < 300, f"the run took {elapsed:.0f} s"


def test_requests_the_server_refuses_end_the_run_with_status_1(capsys, server, vllm_python, tiny_model):
    # Prompts longer than the server's max_model_len: vLLM answers 400 to every one.
    status, out, err = _loadtest(capsys, server, vllm_python, tiny_model, "--num-prompts", "2", "--concurrency", "2",
                                 "--input-len", str(MAX_MODEL_LEN + 200), "--output-len", "4", "--timeout", "300")
    assert status == 1, f"exit {status}\n{out}\n{err}"
    assert "requests: 0 answered, 2 failed" in out and "error:" in out, out
    assert "2 of 2 requests failed" in err, err


def test_the_timeout_bounds_the_whole_run(capsys, server, vllm_python, tiny_model):
    started = time.monotonic()
    status, _, err = _loadtest(capsys, server, vllm_python, tiny_model, "--num-prompts", "4", "--timeout", "2")
    elapsed = time.monotonic() - started
    assert status == 1 and "did not finish within --timeout 2 s" in err, f"exit {status}\n{err}"
    assert elapsed < 30, f"a 2 s timeout took {elapsed:.0f} s to stop the run"
