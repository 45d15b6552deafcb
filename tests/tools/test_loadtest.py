"""tools.loadtest without vLLM: its bounds (exit 2), the preflight request that fails fast against
a local server (exit 1 for an unreachable or refusing server, 2 for a model it does not serve),
what it hands to vLLM's benchmark, and how it reads the benchmark's result.

The benchmark itself runs against the real vLLM CPU server in tests/integration/test_loadtest.py."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tools import loadtest
from tools.loadtest import LoadSettings, bench_argv, interpret, main

KEY = "s3cr3t-api-key-9f2c41"


class Models(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, served: list[str], key: str | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.served = served
        self.key = key
        self.seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Models

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        body: dict[str, Any]
        if self.server.key and self.headers.get("Authorization") != f"Bearer {self.server.key}":
            body, status = {"error": "Unauthorized"}, 401
        elif self.path == "/v1/models":
            body, status = {"object": "list", "data": [{"id": m, "object": "model"} for m in self.server.served]}, 200
        else:
            body, status = {"error": "not found"}, 404
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def models() -> Iterator[Models]:
    server = Models(["tiny"], key=KEY)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert KEY not in out + err, f"tools.loadtest {' '.join(a for a in argv if KEY not in a)}: printed the API key"
    return status, out, err


@pytest.mark.parametrize("extra, message", [
    (["--num-prompts", "0"], "--num-prompts 0 is out of bounds: 1 to 10,000"),
    (["--num-prompts", "10001"], "--num-prompts 10001 is out of bounds"),
    (["--concurrency", "257"], "--concurrency 257 is out of bounds: 1 to 256"),
    (["--output-len", "0"], "--output-len 0 is out of bounds"),
    (["--timeout", "3601"], "--timeout 3601 is out of bounds"),
    (["--timeout", "nan"], "--timeout nan is out of bounds"),
    (["--request-rate", "0"], "--request-rate 0 must be more than 0"),
    (["--goodput", "latency:500"], "--goodput latency:500: give ttft, tpot, e2el"),
    (["--goodput", "ttft:fast"], "--goodput ttft:nan"),
    (["--header", "no colon"], "headers must look like 'Name: value'"),
])
def test_out_of_bounds_settings_exit_2_before_any_request(models: Models, capsys, extra, message):
    status, _, err = run(capsys, "--url", models.url, "--model", "tiny", "--header", f"Authorization: Bearer {KEY}",
                         *extra)
    assert status == 2, f"{extra}: exit {status}\n{err}"
    assert message in err, f"{extra}: expected {message!r} in {err!r}"
    assert not models.seen, f"{extra}: a request was sent before the settings were checked"


def test_url_must_be_http(capsys):
    status, _, err = run(capsys, "--url", "127.0.0.1:8000", "--model", "tiny")
    assert status == 2 and "--url must be an http(s) URL" in err, f"exit {status}\n{err}"


def test_nothing_listening_fails_within_seconds_naming_the_url(capsys):
    server = Models([])
    url = server.url
    server.server_close()  # the port is now closed
    started = time.monotonic()
    status, _, err = run(capsys, "--url", url, "--model", "tiny", "--header", f"Authorization: Bearer {KEY}")
    assert status == 1, f"exit {status}\n{err}"
    assert f"cannot connect to {url}/v1/models" in err and "port-forward" in err, err
    assert time.monotonic() - started < 10, "an unreachable server was not reported within seconds"


def test_refused_credentials_exit_1_without_echoing_the_key(models: Models, capsys):
    status, _, err = run(capsys, "--url", models.url, "--model", "tiny", "--header", "Authorization: Bearer wrong")
    assert status == 1 and "refused the credentials (HTTP 401)" in err, f"exit {status}\n{err}"
    assert models.seen[0]["authorization"] == "Bearer wrong", "the header was not sent"


def test_a_model_the_server_does_not_serve_exits_2_listing_what_it_serves(models: Models, capsys):
    status, _, err = run(capsys, "--url", models.url, "--model", "llama", "--header", f"Authorization: Bearer {KEY}")
    assert status == 2, f"exit {status}\n{err}"
    assert "--model 'llama' is not served at" in err and "(it serves: tiny)" in err, err


def test_a_python_without_vllm_exits_2_naming_it(models: Models, capsys):
    """The benchmark really starts under the given interpreter; this one has no vLLM."""
    status, _, err = run(capsys, "--url", models.url, "--model", "tiny", "--header", f"Authorization: Bearer {KEY}",
                         "--vllm-python", sys.executable, "--num-prompts", "2")
    assert status == 2, f"exit {status}\n{err}"
    assert f"--vllm-python {sys.executable} cannot import vLLM's serving benchmark" in err, err


def test_bench_arguments_are_bounded_and_carry_no_secret():
    settings = LoadSettings(url="http://127.0.0.1:8000/", model="tiny", tokenizer="/models/tiny", num_prompts=12,
                            concurrency=3, input_len=32, output_len=16, goodput_ms={"ttft": 500.0},
                            headers={"Authorization": f"Bearer {KEY}"})
    argv = bench_argv(settings)
    pairs = dict(zip(argv, argv[1:], strict=False))  # each flag -> the word after it
    assert pairs["--num-prompts"] == "12" and pairs["--max-concurrency"] == "3", argv
    assert pairs["--base-url"] == "http://127.0.0.1:8000" and pairs["--endpoint"] == "/v1/completions", argv
    assert pairs["--random-input-len"] == "32" and pairs["--random-output-len"] == "16", argv
    assert pairs["--tokenizer"] == "/models/tiny" and pairs["--model"] == "tiny", argv
    assert argv[argv.index("--goodput") + 1] == "ttft:500", argv
    assert "ttft" in pairs["--percentile-metrics"] and "tpot" in pairs["--percentile-metrics"], argv
    assert not any(KEY in a for a in argv), "the API key reached the benchmark's command line"


def _raw(completed: int, failed: int, errors: list[str], goodput: float | None = None) -> dict[str, Any]:
    """A result with the keys vllm.benchmarks.serve.main returns (vLLM 0.32), figures made up."""
    raw: dict[str, Any] = {"duration": 2.0, "completed": completed, "failed": failed,
                           "total_output_tokens": 16 * completed, "request_throughput": completed / 2.0,
                           "output_throughput": 8.0 * completed, "request_goodput": goodput,
                           "errors": [""] * completed + errors}
    for metric in ("ttft", "tpot", "itl", "e2el"):
        for stat, value in (("mean", 10.0), ("median", 9.0), ("p50", 9.0), ("p95", 20.0), ("p99", 30.0)):
            raw[f"{stat}_{metric}_ms"] = value
    return raw


def test_a_failed_request_makes_the_run_exit_1_with_its_error_redacted():
    result = interpret(_raw(3, 1, [f"HTTP 500: overloaded Bearer {KEY}"]), {},
                       loadtest._Redactor([f"Bearer {KEY}"]))
    assert result.status == 1, f"1 of 4 failed but status {result.status}"
    assert result.error_samples == ("HTTP 500: overloaded ***",), result.error_samples
    assert result.goodput is None, "goodput reported without objectives"


def test_every_request_answered_is_exit_0_and_goodput_is_reported_when_asked():
    result = interpret(_raw(4, 0, [], goodput=1.5), {"ttft": 500.0})
    assert result.status == 0 and result.goodput == 1.5, result
    assert "goodput: 1.50 req/s met every objective (ttft <= 500 ms)" in result.summary(), result.summary()
    assert result.ttft.p95_ms == 20.0 and result.tpot.p99_ms == 30.0, result


def test_no_answered_request_is_exit_1_and_shows_no_latency():
    result = interpret(_raw(0, 2, ["Bad Request"]), {})
    assert result.status == 1 and "no request was answered" in result.summary(), result.summary()


def test_infinite_request_rate_is_passed_as_inf():
    assert "inf" in bench_argv(LoadSettings(url="http://h:1", model="m", request_rate=math.inf))
