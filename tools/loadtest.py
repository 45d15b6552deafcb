"""A bounded load generator for OpenAI-compatible ``/v1/completions`` endpoints.

Replaces the tutorial's ``load.sh`` (N shell loops of curl that never stop):
the same request shape, but every run ends after ``--duration`` seconds (at
most 3600) plus at most one request timeout, and it reports what happened.

    python -m tools.loadtest --url http://127.0.0.1:8000 --model NAME \\
        [--concurrency 8] [--duration 30] [--max-tokens 100] \\
        [--prompt "Write a story about san francisco"] [--timeout 60] \\
        [--header 'Authorization: Bearer ...'] [--json]

Standard library only. Header values are sent but never printed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

MAX_DURATION_S = 3600.0
MAX_CONCURRENCY = 256
MAX_REQUEST_TIMEOUT_S = 3600.0
MAX_ERROR_SAMPLES = 5
DEFAULT_PROMPT = "Write a story about san francisco"
# Extra time allowed after the last request timeout before workers are abandoned.
_JOIN_GRACE_S = 5.0
# Pause after a failed request before the loop sends the next one.
_ERROR_BACKOFF_S = 0.05
# Connection failures (refused, unknown host, reset) before any request succeeded after which the
# run stops: the server is not there, and hammering it for the whole duration says nothing more.
FAIL_FAST_CONNECT_ERRORS = 5


@dataclass(frozen=True)
class LoadResult:
    """Outcome of one run.

    ``requests`` counts every request that finished (successes and errors);
    ``errors`` the failed ones (HTTP error, timeout, bad body, or still running
    when the run was cut off). ``requests_per_s`` and
    ``generated_tokens_per_s`` count successful requests only, over the
    wall-clock ``duration_s`` of the run (first request start to last
    response). Latency percentiles are over successful requests (linear
    interpolation between closest ranks) and are None when none succeeded.
    """

    requests: int
    errors: int
    duration_s: float
    requests_per_s: float
    generated_tokens_per_s: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    error_samples: tuple[str, ...]
    # Set when the run stopped early because no request could connect: what the connection said.
    unreachable: str | None = None

    def summary(self) -> str:
        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f} s"

        lines = [
            f"requests: {self.requests} ({self.errors} errors) in {self.duration_s:.1f} s",
            f"throughput: {self.requests_per_s:.2f} req/s, "
            f"{self.generated_tokens_per_s:.1f} generated tokens/s",
            f"latency: p50 {fmt(self.latency_p50_s)}, p95 {fmt(self.latency_p95_s)}",
        ]
        lines += [f"error: {sample}" for sample in self.error_samples]
        if self.unreachable:
            lines.append(f"stopped early: {self.unreachable}")
        return "\n".join(lines)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The *q*-th percentile (0..100) of ascending values, linear interpolation."""
    if not sorted_values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    weight = position - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


def validate(concurrency: int, duration_s: float, max_tokens: int,
             request_timeout_s: float) -> None:
    """Raise ValueError with a user-facing message for out-of-bounds settings."""
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s)):
        raise ValueError("duration must be a finite number of seconds")
    if duration_s > MAX_DURATION_S:
        raise ValueError(
            f"refusing a duration of {duration_s:g} s: the maximum is {MAX_DURATION_S:g} s "
            "(run it again if you need longer)")
    if duration_s <= 0:
        raise ValueError("duration must be more than 0 seconds")
    if concurrency > MAX_CONCURRENCY:
        raise ValueError(
            f"refusing concurrency {concurrency}: the maximum is {MAX_CONCURRENCY}")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if max_tokens < 1:
        raise ValueError("max-tokens must be at least 1")
    if not (0 < request_timeout_s <= MAX_REQUEST_TIMEOUT_S):
        raise ValueError(
            f"request timeout must be more than 0 and at most {MAX_REQUEST_TIMEOUT_S:g} s")


def parse_header(text: str) -> tuple[str, str]:
    """``'Name: value'`` -> ``('Name', 'value')``."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise ValueError("headers must look like 'Name: value'")
    return name, value.strip()


class _Redactor:
    def __init__(self, secrets: Sequence[str]):
        # Longest first so a value containing another is hidden whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _completions_url(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"--url must be an http(s) URL, got {url!r}")
    return url.rstrip("/") + "/v1/completions"


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        # Never send loopback traffic through a proxy from the environment.
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.tokens = 0
        self.errors = 0
        self.samples: list[str] = []
        self.last_finish = 0.0
        self.connect_errors = 0
        self.stop = threading.Event()

    def success(self, latency: float, tokens: int, finished: float) -> None:
        with self.lock:
            self.latencies.append(latency)
            self.tokens += tokens
            self.last_finish = max(self.last_finish, finished)

    def failure(self, message: str, finished: float, could_not_connect: bool = False) -> None:
        with self.lock:
            self.errors += 1
            if could_not_connect and not self.latencies:
                self.connect_errors += 1
                if self.connect_errors >= FAIL_FAST_CONNECT_ERRORS:
                    self.stop.set()
            self.last_finish = max(self.last_finish, finished)
            if len(self.samples) < MAX_ERROR_SAMPLES and message not in self.samples:
                self.samples.append(message)


def _one_request(opener: urllib.request.OpenerDirector, url: str, body: bytes,
                 headers: Mapping[str, str], timeout: float) -> int:
    """Send one completion request; return usage.completion_tokens or raise."""
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json", **headers})
    with opener.open(request, timeout=timeout) as response:
        payload = json.loads(response.read())
    if not isinstance(payload, dict) or "choices" not in payload:
        raise ValueError("response has no 'choices'")
    usage = payload.get("usage") or {}
    tokens = usage.get("completion_tokens", 0)
    return int(tokens) if isinstance(tokens, (int, float)) else 0


def _could_not_connect(exc: BaseException) -> bool:
    """Did the request fail before a server answered (refused, unknown host, reset)?"""
    if isinstance(exc, urllib.error.HTTPError):
        return False
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, OSError) and not isinstance(reason, TimeoutError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        try:
            detail = exc.read(300).decode("utf-8", "replace")
        except Exception:  # the body is best-effort context only
            detail = ""
        detail = " ".join(detail.split())
        return f"HTTP {exc.code}: {detail[:200]}" if detail else f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return f"connection error: {exc.reason}"
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def run_load(
    url: str,
    model: str,
    concurrency: int = 8,
    duration_s: float = 30.0,
    max_tokens: int = 100,
    prompt: str = DEFAULT_PROMPT,
    request_timeout_s: float = 60.0,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Run *concurrency* request loops against ``<url>/v1/completions``.

    No request starts after *duration_s*; requests still running then may take
    up to *request_timeout_s* more, after which the run ends regardless
    (anything still outstanding counts as an error). So the wall time is at
    most about ``duration_s + request_timeout_s + 5`` seconds.
    """
    validate(concurrency, duration_s, max_tokens, request_timeout_s)
    endpoint = _completions_url(url)
    headers = dict(headers or {})
    redact = _Redactor(list(headers.values()))
    opener = _opener(url)
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0}).encode()
    stats = _Stats()
    started = time.monotonic()
    deadline = started + duration_s
    in_flight = [0]

    def worker() -> None:
        while time.monotonic() < deadline and not stats.stop.is_set():
            sent = time.monotonic()
            with stats.lock:
                in_flight[0] += 1
            try:
                tokens = _one_request(opener, endpoint, body, headers, request_timeout_s)
            except Exception as exc:  # every failure is counted, none is fatal
                finished = time.monotonic()
                with stats.lock:
                    in_flight[0] -= 1
                stats.failure(redact(_describe(exc)), finished, _could_not_connect(exc))
                # Do not hammer a server that refuses connections outright.
                stats.stop.wait(min(_ERROR_BACKOFF_S, max(0.0, deadline - time.monotonic())))
            else:
                finished = time.monotonic()
                with stats.lock:
                    in_flight[0] -= 1
                stats.success(finished - sent, tokens, finished)

    threads = [threading.Thread(target=worker, name=f"load-{i}", daemon=True)
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    hard_stop = deadline + request_timeout_s + _JOIN_GRACE_S
    for thread in threads:
        thread.join(timeout=max(0.0, hard_stop - time.monotonic()))

    with stats.lock:
        abandoned = in_flight[0] if any(t.is_alive() for t in threads) else 0
        latencies = sorted(stats.latencies)
        errors = stats.errors + abandoned
        samples = list(stats.samples)
        tokens = stats.tokens
        stopped = stats.stop.is_set()
        end = time.monotonic() if abandoned or stopped else max(stats.last_finish, deadline)
    if abandoned and len(samples) < MAX_ERROR_SAMPLES:
        samples.append(f"{abandoned} request(s) still running when the run was cut off")
    elapsed = max(end - started, 1e-9)
    ok = len(latencies)
    return LoadResult(
        requests=ok + errors,
        errors=errors,
        duration_s=elapsed,
        requests_per_s=ok / elapsed,
        generated_tokens_per_s=tokens / elapsed,
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        error_samples=tuple(samples),
        unreachable=(f"cannot connect to {redact(endpoint)}: the first {FAIL_FAST_CONNECT_ERRORS} requests failed "
                     f"({samples[0] if samples else 'no answer'}); check the URL and that the server is running"
                     if stopped else None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 some requests succeeded; 1 none did; 2 bad arguments; 3 internal error (--debug)."""
    from offline.cli import guarded

    return guarded(_main, argv, prog="tools.loadtest")


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.loadtest",
        description="Bounded load against an OpenAI-compatible /v1/completions endpoint.")
    parser.add_argument("--url", required=True,
                        help="base URL of the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", required=True, help="model name the server serves")
    parser.add_argument("--concurrency", type=int, default=8,
                        help=f"parallel request loops (max {MAX_CONCURRENCY})")
    parser.add_argument("--duration", type=float, default=30.0,
                        help=f"seconds during which new requests start (max {MAX_DURATION_S:g})")
    parser.add_argument("--max-tokens", type=int, default=100)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, s")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="extra request header (repeatable); values are never printed")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    args = parser.parse_args(argv)

    try:
        headers = dict(parse_header(h) for h in args.header)
        validate(args.concurrency, args.duration, args.max_tokens, args.timeout)
        _completions_url(args.url)
    except ValueError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")

    if not args.json:
        shown = ", ".join(f"{name} (value hidden)" for name in headers) or "none"
        print(f"load: {args.concurrency} loops for {args.duration:g} s against "
              f"{args.url.rstrip('/')}/v1/completions, model {args.model}, "
              f"max_tokens {args.max_tokens}; extra headers: {shown}", file=sys.stderr)
    result = run_load(args.url, args.model, args.concurrency, args.duration, args.max_tokens,
                      args.prompt, args.timeout, headers)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(result.summary())
    if result.unreachable:
        print(f"{parser.prog}: error: {result.unreachable}", file=sys.stderr)
    return 0 if result.requests > result.errors else 1


if __name__ == "__main__":
    sys.exit(main())
