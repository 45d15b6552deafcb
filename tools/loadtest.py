"""A bounded load test of an OpenAI-compatible vLLM server with vLLM's own serving benchmark.

    python -m tools.loadtest --url http://127.0.0.1:8000 --model NAME [--tokenizer ID|PATH] \\
        [--num-prompts 64] [--concurrency 8] [--input-len 256] [--output-len 128] \\
        [--request-rate inf] [--timeout 600] [--goodput ttft:500 tpot:50] \\
        [--header 'Authorization: Bearer ...'] [--vllm-python PATH] [--json]

The requests and the figures are those of ``vllm bench serve`` (``vllm.benchmarks.serve``,
https://docs.vllm.ai/en/latest/cli/bench/serve.html): streamed ``/v1/completions`` with random
prompts of ``--input-len`` tokens and exactly ``--output-len`` generated tokens each (``ignore_eos``),
reporting time to first token (TTFT), time per output token after the first (TPOT), inter-token
latency, end-to-end latency, output token throughput and, with ``--goodput``, the requests per
second that met every service level objective (DistServe's goodput, as vLLM defines it).

Bounded: ``--num-prompts`` requests in all (at most 10,000), at most ``--concurrency`` in flight
(at most 256), and the whole run, vLLM's start included, is stopped after ``--timeout`` seconds
(at most 3600). Before the benchmark starts, one ``GET /v1/models`` with the same headers checks
the server is reachable, accepts the credentials and serves ``--model``, so a missing
port-forward fails in seconds, naming the URL.

vLLM runs in its own venv: ``--vllm-python``, else the cached CPU build ``tools.localvllm``
manages (built on first use, several minutes). The tokenizer (``--tokenizer``, default the model
name) builds the prompts and counts tokens: a Hugging Face id (a gated one needs ``HF_TOKEN``) or
a local directory. Header values go to vLLM on standard input, never on a command line, and are
never printed.

Exit status: 0 every request answered; 1 a request failed, the server could not be reached or
refused the credentials, or the run hit ``--timeout``; 2 invalid arguments, a model the server
does not serve, or a tokenizer that cannot be loaded; 3 an internal error (``--debug``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from offline.cli import ToolError
from tools import loadtest_in_venv

MAX_NUM_PROMPTS = 10_000
MAX_CONCURRENCY = 256
MAX_TIMEOUT_S = 3600.0
MAX_TOKENS = 131_072
MAX_ERROR_SAMPLES = 5
PREFLIGHT_TIMEOUT_S = 15.0
# The service level objectives vLLM's benchmark accepts for goodput, in milliseconds.
GOODPUT_METRICS = ("ttft", "tpot", "e2el")
PERCENTILES = (50, 95, 99)

OK, REFUSED, INVALID = 0, 1, 2


class LoadTestError(ToolError):
    """A problem reported in one sentence with its exit status (1 the server, 2 the input)."""


@dataclass(frozen=True)
class LoadSettings:
    url: str
    model: str
    tokenizer: Optional[str] = None
    num_prompts: int = 64
    concurrency: int = 8
    input_len: int = 256
    output_len: int = 128
    request_rate: float = math.inf
    timeout_s: float = 600.0
    goodput_ms: Mapping[str, float] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0

    def validate(self) -> None:
        """Raise LoadTestError (status 2) naming the first out-of-bounds setting."""
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise LoadTestError(f"--url must be an http(s) URL such as http://127.0.0.1:8000, got {self.url!r}", INVALID)
        bounds: tuple[tuple[str, int, int], ...] = (("--num-prompts", self.num_prompts, MAX_NUM_PROMPTS), ("--concurrency", self.concurrency, MAX_CONCURRENCY),
                  ("--input-len", self.input_len, MAX_TOKENS), ("--output-len", self.output_len, MAX_TOKENS))
        for flag, value, most in bounds:
            if not 1 <= value <= most:
                raise LoadTestError(f"{flag} {value} is out of bounds: 1 to {most:,}", INVALID)
        if not (math.isfinite(self.timeout_s) and 0 < self.timeout_s <= MAX_TIMEOUT_S):
            raise LoadTestError(f"--timeout {self.timeout_s:g} is out of bounds: more than 0 and at most "
                                f"{MAX_TIMEOUT_S:g} s (run again for longer)", INVALID)
        if math.isnan(self.request_rate) or self.request_rate <= 0:
            raise LoadTestError(f"--request-rate {self.request_rate:g} must be more than 0 requests/s "
                                "(inf sends them all at once, up to --concurrency)", INVALID)
        for name, objective in self.goodput_ms.items():
            if name not in GOODPUT_METRICS or not (math.isfinite(objective) and objective > 0):
                raise LoadTestError(f"--goodput {name}:{objective:g}: give {', '.join(GOODPUT_METRICS)} with a "
                                    "positive number of milliseconds, e.g. ttft:500 tpot:50", INVALID)

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")


@dataclass(frozen=True)
class Latency:
    """One latency metric over the successful requests, in milliseconds (vLLM's figures)."""

    mean_ms: float
    median_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class LoadResult:
    """What vLLM's benchmark measured. Throughputs are over the benchmark's wall-clock duration."""

    completed: int
    failed: int
    duration_s: float
    request_throughput: float  # successful requests per second
    output_throughput: float  # generated tokens per second
    total_output_tokens: int
    ttft: Latency
    tpot: Latency
    itl: Latency
    e2el: Latency
    goodput: Optional[float] = None  # requests per second meeting every --goodput objective
    goodput_objectives_ms: Mapping[str, float] = field(default_factory=dict)
    error_samples: tuple[str, ...] = ()

    @property
    def status(self) -> int:
        return OK if self.failed == 0 and self.completed > 0 else REFUSED

    def summary(self) -> str:
        def line(name: str, m: Latency) -> str:
            return (f"{name}: mean {m.mean_ms:.1f} ms, median {m.median_ms:.1f} ms, p95 {m.p95_ms:.1f} ms, "
                    f"p99 {m.p99_ms:.1f} ms")

        lines = [f"requests: {self.completed} answered, {self.failed} failed in {self.duration_s:.1f} s "
                 f"({self.request_throughput:.2f} req/s)",
                 f"output throughput: {self.output_throughput:.1f} tokens/s ({self.total_output_tokens} tokens)"]
        if self.completed:
            lines += [line("time to first token (TTFT)", self.ttft), line("time per output token (TPOT)", self.tpot),
                      line("inter-token latency (ITL)", self.itl), line("end-to-end latency", self.e2el)]
        else:
            lines.append("latency: no request was answered")
        if self.goodput is not None:
            objectives = ", ".join(f"{k} <= {v:g} ms" for k, v in self.goodput_objectives_ms.items())
            lines.append(f"goodput: {self.goodput:.2f} req/s met every objective ({objectives})")
        lines += [f"error: {sample}" for sample in self.error_samples]
        return "\n".join(lines)


def parse_header(text: str) -> tuple[str, str]:
    """``'Name: value'`` -> ``('Name', 'value')``."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise LoadTestError("headers must look like 'Name: value'", INVALID)
    return name, value.strip()


def parse_goodput(pairs: Sequence[str]) -> dict[str, float]:
    """``['ttft:500', 'tpot:50']`` -> ``{'ttft': 500.0, 'tpot': 50.0}`` (milliseconds)."""
    objectives: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        try:
            objectives[name.strip()] = float(value) if sep else math.nan
        except ValueError:
            objectives[name.strip()] = math.nan
    return objectives


class _Redactor:
    def __init__(self, secrets: Sequence[str]):
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


# ---------------------------------------------------------------------------- the preflight request


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never proxy loopback
    return urllib.request.build_opener()


def preflight(settings: LoadSettings) -> list[str]:
    """The models the server lists; LoadTestError when it cannot be reached, refuses, or lacks the model."""
    url = f"{settings.base_url}/v1/models"
    redact = _Redactor(list(settings.headers.values()))
    request = urllib.request.Request(url, headers={"Accept": "application/json", **settings.headers})
    try:
        with _opener(url).open(request, timeout=PREFLIGHT_TIMEOUT_S) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise LoadTestError(f"{url} refused the credentials (HTTP {error.code}); pass the server's API key with "
                                "--header 'Authorization: Bearer <key>'", REFUSED) from None
        raise LoadTestError(f"{url} answered HTTP {error.code}; is this a vLLM OpenAI-compatible server?",
                            REFUSED) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise LoadTestError(f"cannot connect to {redact(url)} ({reason}); check the URL and that the server (or "
                            "its port-forward) is running", REFUSED) from None
    except ValueError:
        raise LoadTestError(f"{url} did not answer JSON; is this a vLLM OpenAI-compatible server?", REFUSED) from None
    models = [str(m.get("id")) for m in payload.get("data", []) if isinstance(m, dict)] \
        if isinstance(payload, dict) else []
    if settings.model not in models:
        raise LoadTestError(f"--model {settings.model!r} is not served at {settings.base_url} (it serves: "
                            f"{', '.join(models) or 'nothing'})", INVALID)
    return models


# ---------------------------------------------------------------------------- the benchmark


def bench_argv(settings: LoadSettings) -> list[str]:
    """The ``vllm bench serve`` arguments for these settings (headers are passed apart)."""
    argv = ["--backend", "openai", "--base-url", settings.base_url, "--endpoint", "/v1/completions",
            "--model", settings.model, "--tokenizer", settings.tokenizer or settings.model,
            "--dataset-name", "random", "--random-input-len", str(settings.input_len),
            "--random-output-len", str(settings.output_len), "--num-prompts", str(settings.num_prompts),
            "--max-concurrency", str(settings.concurrency),
            "--request-rate", "inf" if math.isinf(settings.request_rate) else f"{settings.request_rate:g}",
            "--temperature", "0", "--seed", str(settings.seed), "--disable-tqdm", "--save-detailed",
            "--percentile-metrics", "ttft,tpot,itl,e2el",
            "--metric-percentiles", ",".join(str(p) for p in PERCENTILES)]
    if settings.goodput_ms:
        argv += ["--goodput", *(f"{k}:{v:g}" for k, v in settings.goodput_ms.items())]
    return argv


def default_vllm_python() -> Path:
    from tools.localvllm import ensure_vllm_venv

    return ensure_vllm_venv()


def run_benchmark(settings: LoadSettings, vllm_python: Path, log: Optional[Any] = None) -> LoadResult:
    """Run vLLM's serving benchmark under ``vllm_python``; raise LoadTestError for a refused run."""
    settings.validate()
    redact = _Redactor(list(settings.headers.values()))
    with tempfile.TemporaryDirectory(prefix="loadtest-") as scratch:
        result_path = Path(scratch) / "result.json"
        output_path = Path(scratch) / "bench.log"
        request = json.dumps({"argv": bench_argv(settings), "headers": dict(settings.headers),
                              "result": str(result_path)})
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        if urllib.parse.urlsplit(settings.url).hostname in ("127.0.0.1", "localhost", "::1"):
            env["NO_PROXY"] = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1,localhost"]))
        started = time.monotonic()
        with open(output_path, "w+b") as output:
            process = subprocess.Popen([str(vllm_python), "-I", str(loadtest_in_venv.SCRIPT)], stdin=subprocess.PIPE,
                                       stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                process.communicate(request.encode(), timeout=settings.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                raise LoadTestError(f"the load test did not finish within --timeout {settings.timeout_s:g} s "
                                    f"({settings.num_prompts} requests of {settings.output_len} tokens at concurrency "
                                    f"{settings.concurrency}); lower --num-prompts or --output-len, or raise --timeout",
                                    REFUSED) from None
            finally:
                if process.poll() is None:
                    _kill_group(process)
            output.seek(0)
            transcript = redact(output.read().decode("utf-8", "replace"))
        if log is not None:
            log.write(transcript)
        if not result_path.is_file():
            tail = "\n".join(transcript.strip().splitlines()[-15:])
            raise RuntimeError(f"vLLM's benchmark exited with status {process.returncode} after "
                               f"{time.monotonic() - started:.0f} s without a result:\n{tail}")
        answer = json.loads(result_path.read_text(encoding="utf-8"))
    if "result" not in answer:
        stage, error = answer.get("stage"), redact(str(answer.get("error")))
        if stage == "import":
            raise LoadTestError(f"--vllm-python {vllm_python} cannot import vLLM's serving benchmark ({error}); give the "
                                "python of a venv with vLLM, or leave --vllm-python out to use the cached CPU build",
                                INVALID)
        if stage == "tokenizer":
            raise LoadTestError(f"tokenizer {settings.tokenizer or settings.model!r} cannot be loaded ({error}); pass "
                                "--tokenizer with the model's Hugging Face id (HF_TOKEN for a gated one) or a local "
                                "directory", INVALID)
        raise LoadTestError(f"vLLM's benchmark stopped at {stage}: {error}", INVALID if stage == "arguments" else REFUSED)
    return interpret(answer["result"], settings.goodput_ms, redact)


def interpret(raw: Mapping[str, Any], goodput_ms: Mapping[str, float], redact=lambda text: text) -> LoadResult:
    """vLLM's benchmark result (``vllm.benchmarks.serve.main``'s return value) as a LoadResult."""
    def latency(name: str) -> Latency:
        return Latency(mean_ms=float(raw[f"mean_{name}_ms"]), median_ms=float(raw[f"median_{name}_ms"]),
                       p95_ms=float(raw[f"p95_{name}_ms"]), p99_ms=float(raw[f"p99_{name}_ms"]))

    samples: list[str] = []
    for error in raw.get("errors") or []:
        text = " ".join(redact(str(error)).split())[:300]
        if text and text not in samples:
            samples.append(text)
        if len(samples) == MAX_ERROR_SAMPLES:
            break
    goodput = raw.get("request_goodput")
    return LoadResult(
        completed=int(raw["completed"]), failed=int(raw.get("failed", 0)), duration_s=float(raw["duration"]),
        request_throughput=float(raw["request_throughput"]), output_throughput=float(raw["output_throughput"]),
        total_output_tokens=int(raw["total_output_tokens"]),
        ttft=latency("ttft"), tpot=latency("tpot"), itl=latency("itl"), e2el=latency("e2el"),
        goodput=None if goodput is None or not goodput_ms else float(goodput),
        goodput_objectives_ms=dict(goodput_ms), error_samples=tuple(samples),
    )


def _kill_group(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            process.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


# ---------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 every request answered; 1 refused or failed; 2 bad input; 3 internal error (--debug)."""
    from offline.cli import guarded

    return guarded(_main, argv, prog="tools.loadtest")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.loadtest",
                                     description="Bounded load test with vLLM's serving benchmark (TTFT, TPOT, throughput).")
    parser.add_argument("--url", required=True, help="base URL of the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", required=True, help="model name the server serves (as /v1/models lists it)")
    parser.add_argument("--tokenizer", help="Hugging Face id or local directory of the tokenizer (default: --model)")
    parser.add_argument("--num-prompts", type=int, default=64, help=f"requests in all (max {MAX_NUM_PROMPTS:,})")
    parser.add_argument("--concurrency", type=int, default=8, help=f"most requests in flight (max {MAX_CONCURRENCY})")
    parser.add_argument("--input-len", type=int, default=256, help="prompt tokens per request")
    parser.add_argument("--output-len", type=int, default=128, help="generated tokens per request")
    parser.add_argument("--request-rate", type=float, default=math.inf,
                        help="requests per second (Poisson arrivals); default inf: all at once, up to --concurrency")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help=f"seconds the whole run may take, vLLM's start included (max {MAX_TIMEOUT_S:g})")
    parser.add_argument("--goodput", nargs="+", default=[], metavar="METRIC:MS",
                        help="service level objectives for goodput, e.g. ttft:500 tpot:50 (ttft, tpot, e2el; ms)")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="request header (repeatable), e.g. the API key; values are never printed")
    parser.add_argument("--vllm-python", type=Path, help="python of a venv with vLLM (default: the cached CPU build)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    return parser


def _main(argv: Sequence[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = LoadSettings(url=args.url, model=args.model, tokenizer=args.tokenizer, num_prompts=args.num_prompts,
                                concurrency=args.concurrency, input_len=args.input_len, output_len=args.output_len,
                                request_rate=args.request_rate, timeout_s=args.timeout,
                                goodput_ms=parse_goodput(args.goodput),
                                headers=dict(parse_header(h) for h in args.header))
        settings.validate()
        if args.vllm_python is not None and not args.vllm_python.is_file():
            raise LoadTestError(f"--vllm-python {args.vllm_python} does not exist; give the python of a venv with vLLM",
                                INVALID)
        preflight(settings)
        shown = ", ".join(f"{name} (value hidden)" for name in settings.headers) or "none"
        print(f"load: {settings.num_prompts} requests of {settings.input_len} prompt + {settings.output_len} output "
              f"tokens, at most {settings.concurrency} at once, against {settings.base_url}/v1/completions, model "
              f"{settings.model}; extra headers: {shown}; stops after {settings.timeout_s:g} s", file=sys.stderr)
        result = run_benchmark(settings, args.vllm_python or default_vllm_python())
    except LoadTestError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return error.status
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(result.summary())
    if result.status != OK:
        print(f"{parser.prog}: error: {result.failed} of {result.completed + result.failed} requests failed",
              file=sys.stderr)
    return result.status


if __name__ == "__main__":
    sys.exit(main())
