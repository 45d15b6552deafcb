"""Unit tests of tools.loadtest against a small fake /v1/completions server."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tools import loadtest
from tools.loadtest import LoadResult, main, percentile, run_load

SECRET = "s3cr3t-token-value-42"


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, delay=0.0, tokens=7, fail_every=0, slow_every=0, slow_delay=0.0,
                 hang=0.0, trickle=False, echo_header=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.delay = delay
        self.tokens = tokens
        self.fail_every = fail_every
        self.slow_every = slow_every
        self.slow_delay = slow_delay
        self.hang = hang
        self.trickle = trickle
        self.echo_header = echo_header
        self.lock = threading.Lock()
        self.total = 0
        self.failed = 0
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.seen_headers: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.total += 1
            n = srv.total
            fail = bool(srv.fail_every) and n % srv.fail_every == 0
            if fail:
                srv.failed += 1
            srv.bodies.append(body)
            srv.paths.append(self.path)
            srv.seen_headers.append(dict(self.headers))
        if srv.hang:
            time.sleep(srv.hang)
        if srv.trickle:
            # Headers at once, then one byte now and then: never idle long
            # enough for a socket timeout, never finished either.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(100):
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
            return
        delay = srv.slow_delay if srv.slow_every and n % srv.slow_every == 0 else srv.delay
        time.sleep(delay)
        if fail:
            echoed = self.headers.get(srv.echo_header, "") if srv.echo_header else ""
            payload = json.dumps({"error": {"message": f"overloaded {echoed}"}}).encode()
            self.send_response(500)
        else:
            payload = json.dumps({
                "id": f"cmpl-{n}", "object": "text_completion", "model": body["model"],
                "choices": [{"index": 0, "text": " hello", "finish_reason": "length"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": srv.tokens,
                          "total_tokens": 5 + srv.tokens},
            }).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def fake_server():
    servers = []

    def start(**config) -> FakeServer:
        srv = FakeServer(**config)
        thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_percentile_is_linear_between_ranks():
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_counts_and_rates_match_what_the_server_saw(fake_server):
    srv = fake_server(delay=0.02, tokens=7)
    result = run_load(srv.url + "/", "tiny", concurrency=3, duration_s=1.0, max_tokens=9,
                      prompt="Hi there", request_timeout_s=5)
    assert isinstance(result, LoadResult)
    assert result.errors == 0
    assert result.requests == srv.total > 10
    assert 1.0 <= result.duration_s < 2.0
    assert result.requests_per_s == pytest.approx(result.requests / result.duration_s)
    assert result.generated_tokens_per_s == pytest.approx(7 * result.requests / result.duration_s)
    assert 0.02 <= result.latency_p50_s <= result.latency_p95_s < 1.0
    assert result.error_samples == ()
    # The request itself: the tutorial's shape, with our parameters.
    assert set(srv.paths) == {"/v1/completions"}
    assert srv.bodies[0] == {"model": "tiny", "prompt": "Hi there", "max_tokens": 9,
                             "temperature": 0}


def test_errors_are_counted_and_excluded_from_rates(fake_server):
    srv = fake_server(delay=0.01, tokens=5, fail_every=3)
    result = run_load(srv.url, "tiny", concurrency=2, duration_s=1.0, max_tokens=5,
                      prompt="x", request_timeout_s=5)
    assert srv.failed > 0
    assert result.requests == srv.total
    assert result.errors == srv.failed
    ok = result.requests - result.errors
    assert result.requests_per_s == pytest.approx(ok / result.duration_s)
    assert result.generated_tokens_per_s == pytest.approx(5 * ok / result.duration_s)
    assert any(sample.startswith("HTTP 500") for sample in result.error_samples)
    assert len(result.error_samples) <= loadtest.MAX_ERROR_SAMPLES


def test_percentiles_reflect_a_slow_tail(fake_server):
    # One request in ten takes 0.4 s, the rest 0.01 s: the median is fast and
    # the 95th percentile falls in the slow tenth.
    srv = fake_server(delay=0.01, slow_every=10, slow_delay=0.4)
    result = run_load(srv.url, "tiny", concurrency=1, duration_s=2.0, max_tokens=1,
                      prompt="x", request_timeout_s=5)
    assert result.requests >= 20
    assert result.latency_p50_s < 0.2
    assert result.latency_p95_s > 0.35


def test_a_hanging_server_cannot_stretch_the_run(fake_server):
    srv = fake_server(hang=30)
    started = time.monotonic()
    result = run_load(srv.url, "tiny", concurrency=2, duration_s=0.5, max_tokens=1,
                      prompt="x", request_timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 + 0.5 + 1.0
    assert result.requests == result.errors >= 2
    assert result.latency_p50_s is None and result.latency_p95_s is None
    assert any("timed out" in sample for sample in result.error_samples)


def test_a_trickling_server_is_cut_off_at_the_hard_stop(fake_server, monkeypatch):
    # A response that keeps the socket busy defeats the per-read timeout; the
    # run must still end at duration + timeout + grace.
    monkeypatch.setattr(loadtest, "_JOIN_GRACE_S", 0.5)
    srv = fake_server(trickle=True)
    started = time.monotonic()
    result = run_load(srv.url, "tiny", concurrency=2, duration_s=0.3, max_tokens=1,
                      prompt="x", request_timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert elapsed < 0.3 + 0.5 + 0.5 + 0.7
    assert result.errors == 2 == result.requests
    assert any("cut off" in sample for sample in result.error_samples)


def test_nothing_listening_gives_errors_and_exit_status_1(capsys):
    from tools.localvllm import free_port

    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code = main(["--url", url, "--model", "m", "--duration", "0.3", "--concurrency", "2"])
    assert time.monotonic() - started < 2
    assert code == 1
    out = capsys.readouterr().out
    assert "connection error" in out
    # With the back-off, two loops make a handful of attempts, not thousands.
    assert int(out.split("requests: ")[1].split()[0]) < 40


def test_header_is_sent_but_its_value_never_printed(fake_server, capsys):
    srv = fake_server(fail_every=2, echo_header="Authorization")
    code = main(["--url", srv.url, "--model", "tiny", "--duration", "0.5", "--concurrency", "2",
                 "--header", f"Authorization: Bearer {SECRET}", "--header", "X-Trace: abc"])
    captured = capsys.readouterr()
    assert code == 0
    assert srv.seen_headers[0]["Authorization"] == f"Bearer {SECRET}"
    assert srv.seen_headers[0]["X-Trace"] == "abc"
    # The server echoed the token into its error bodies; we still never print it.
    assert srv.failed > 0
    assert SECRET not in captured.out + captured.err
    assert "HTTP 500" in captured.out
    assert "Authorization (value hidden)" in captured.err
    assert "***" in captured.out


def test_json_output(fake_server, capsys):
    srv = fake_server(tokens=3)
    code = main(["--url", srv.url, "--model", "tiny", "--duration", "0.3", "--concurrency", "1",
                 "--json", "--header", f"Authorization: Bearer {SECRET}"])
    captured = capsys.readouterr()
    assert code == 0
    data = json.loads(captured.out)
    assert set(data) == {"requests", "errors", "duration_s", "requests_per_s",
                         "generated_tokens_per_s", "latency_p50_s", "latency_p95_s",
                         "error_samples", "unreachable"}
    assert data["requests"] == srv.total and data["errors"] == 0
    assert data["generated_tokens_per_s"] == pytest.approx(3 * srv.total / data["duration_s"])
    assert SECRET not in captured.out + captured.err


@pytest.mark.parametrize("kwargs, message", [
    ({"duration_s": 3601}, "maximum is 3600"),
    ({"duration_s": 0}, "more than 0"),
    ({"duration_s": float("inf")}, "finite"),
    ({"concurrency": 257}, "maximum is 256"),
    ({"concurrency": 0}, "at least 1"),
    ({"max_tokens": 0}, "at least 1"),
    ({"request_timeout_s": 0}, "timeout"),
])
def test_run_load_refuses_out_of_bounds_settings(fake_server, kwargs, message):
    srv = fake_server()
    args = dict(url=srv.url, model="m", concurrency=1, duration_s=1, max_tokens=1,
                prompt="x", request_timeout_s=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        run_load(**args)
    assert srv.total == 0  # refused before sending anything


@pytest.mark.parametrize("extra, message", [
    (["--duration", "7200"], "refusing a duration of 7200 s: the maximum is 3600 s"),
    (["--concurrency", "1000"], "refusing concurrency 1000: the maximum is 256"),
    (["--header", f"Bearer {SECRET}"], "headers must look like 'Name: value'"),
])
def test_cli_refusals_are_clear_and_quiet_about_secrets(extra, message, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["--url", "http://127.0.0.1:9", "--model", "m", *extra])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert SECRET not in err


def test_url_must_be_http():
    with pytest.raises(ValueError, match="http"):
        run_load("127.0.0.1:8000", "m", 1, 1, 1, "x", 1)


def test_nothing_listening_stops_within_seconds_naming_the_url(capsys):
    """A long run against a loopback port where nothing listens ends at once, not after --duration."""
    from tools.localvllm import free_port

    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code = main(["--url", url, "--model", "m", "--duration", "60", "--concurrency", "4"])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert elapsed < 5, f"a run against {url} with nothing listening took {elapsed:.1f} s"
    assert code == 1
    assert f"cannot connect to {url}/v1/completions" in captured.err, captured.err
    requests = int(captured.out.split("requests: ")[1].split()[0])
    assert requests < 4 + loadtest.FAIL_FAST_CONNECT_ERRORS * 2, f"{requests} requests fired at a closed port"


def test_fail_fast_does_not_stop_a_run_once_requests_succeed(fake_server):
    srv = fake_server(delay=0.01, tokens=3, fail_every=2)
    result = run_load(srv.url, "tiny", concurrency=2, duration_s=0.5, max_tokens=3, prompt="x", request_timeout_s=5)
    assert result.unreachable is None, result.unreachable
    assert result.requests > result.errors > 0
