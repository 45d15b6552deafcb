"""Time model load with vLLM's default loader and with the Run:ai model streamer, same files.

    python -m tools.load_bench [--model DIR_OR_GS_URL] [--loaders auto,runai_streamer]
        [--repeats 3] [--python PATH] [--streamer-concurrency N] [--streamer-memory-limit BYTES]
        [--start-timeout 600] [--server-arg=--tensor-parallel-size=8 ...] [--json]

Each run starts a real vLLM OpenAI server on 127.0.0.1 with ``--load-format <loader>`` on the
same model and stops it once ``/health`` answers. It reports, per loader, the median over the
repeats of:

- **ready**: seconds from process start to ``/health`` answering 200 (a replica's whole cold
  start on this machine, load included);
- **load**: the load time vLLM logs itself, when it does: "Model loading took ... seconds" (GPU
  model runner, every loader) or "Loading weights took ... seconds" (the default loader); the
  CPU build logs neither for the streamer, so on CPU compare ``ready``.

Every run gets a fresh ``VLLM_CACHE_ROOT``, so each compiles from scratch and neither loader
inherits the other's compile cache (``--env VLLM_CACHE_ROOT=...`` shares one instead). Without
``--model`` it writes the tiny random Llama of ``tools.localvllm`` (a smoke run: its
weights are a few MB, so the two loaders differ by noise). The runs alternate loaders, so the
page cache favours neither; drop caches between runs (``sync; echo 3 > /proc/sys/vm/drop_caches``
as root) to time cold reads. On a GPU machine, with vLLM and ``runai-model-streamer`` installed
in its own environment::

    python -m tools.load_bench --python /opt/vllm/bin/python --model /models/Llama-3.1-8B-Instruct \\
        --repeats 3 --streamer-concurrency 16 --json
    python -m tools.load_bench --python /opt/vllm/bin/python --loaders runai_streamer \\
        --model gs://<bucket>/models/meta-llama/Llama-3.1-8B-Instruct/<revision>/ --repeats 3

Exit status: 0 every run became healthy; 1 a server failed to start; 2 bad arguments; 3 a bug.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

LOADERS = ("auto", "runai_streamer")  # vLLM's own default --load-format, and the streamer
# vLLM's own load-time lines: vllm/v1/worker/gpu_model_runner.py and model_loader/default_loader.py.
_LOAD_LINES = (re.compile(r"Model loading took [\d.]+ ?GiB(?: memory)? and ([\d.]+) seconds"),
               re.compile(r"Loading weights took ([\d.]+) seconds"))
STREAMER_LINE = "Runai Model Streamer"  # the streamer's progress bar: proof it, not the default loader, read the files


@dataclass
class LoaderResult:
    loader: str
    ready_seconds: list[float] = field(default_factory=list)
    load_seconds: list[float] = field(default_factory=list)  # empty when vLLM logged no load time
    streamer_used: list[bool] = field(default_factory=list)

    @property
    def ready_median(self) -> float:
        return statistics.median(self.ready_seconds)

    @property
    def load_median(self) -> Optional[float]:
        return statistics.median(self.load_seconds) if self.load_seconds else None

    def as_dict(self) -> dict:
        return {**asdict(self), "ready_median": round(self.ready_median, 2),
                "load_median": None if self.load_median is None else round(self.load_median, 3)}


class LoadBenchError(RuntimeError):
    """A server did not start; the message carries its log tail."""


def logged_load_seconds(log: str) -> Optional[float]:
    """The load time vLLM logged itself, or None."""
    for pattern in _LOAD_LINES:
        found = pattern.findall(log)
        if found:
            return float(found[-1])
    return None


def server_argv(python: str, model: str, port: int, loader: str, extra: Sequence[str]) -> list[str]:
    return [python, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", str(port),
            "--model", model, "--load-format", loader, "--max-model-len", "1024", "--max-num-seqs", "8",
            "--served-model-name", "load-bench", *extra]


def streamer_env(concurrency: Optional[int], memory_limit: Optional[int]) -> dict[str, str]:
    """The streamer's own knobs (run-ai/runai-model-streamer docs/src/env-vars.md)."""
    env = {}
    if concurrency is not None:
        env["RUNAI_STREAMER_CONCURRENCY"] = str(concurrency)
    if memory_limit is not None:
        env["RUNAI_STREAMER_MEMORY_LIMIT"] = str(memory_limit)
    return env


def run_loaders(python: str, model: str, loaders: Sequence[str], repeats: int, *, start_timeout: float,
                env: Mapping[str, str], extra: Sequence[str], work: Path) -> dict[str, LoaderResult]:
    """Start one server per loader and repeat, alternating loaders; every server is stopped."""
    from tools.localvllm import LocalServer, ServerStartError, free_port

    results = {loader: LoaderResult(loader) for loader in loaders}
    for attempt in range(repeats):
        for loader in loaders:
            port = free_port()
            log_path = work / f"{loader}-{attempt}.log"
            _log(f"run {attempt + 1}/{repeats}: --load-format {loader}")
            # A fresh vLLM cache per run: a compile cache left by the run before would make the
            # later loader look faster (unless the caller chose a cache with --env).
            run_env = {"VLLM_CACHE_ROOT": str(work / f"vllm-cache-{loader}-{attempt}"), **env}
            server = LocalServer(server_argv(python, model, port, loader, extra), run_env, port,
                                 start_timeout=start_timeout, log_path=log_path)
            try:
                with server:
                    ready = server.startup_seconds
            except ServerStartError as error:
                raise LoadBenchError(f"--load-format {loader} did not start: {error}") from error
            log = server.log_text()
            assert ready is not None  # set once /health answered
            results[loader].ready_seconds.append(ready)
            results[loader].streamer_used.append(STREAMER_LINE in log)
            load = logged_load_seconds(log)
            if load is not None:
                results[loader].load_seconds.append(load)
            _log(f"  ready in {ready:.1f} s" + ("" if load is None else f", vLLM logged a {load:.2f} s load"))
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.load_bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    parser.add_argument("--model", help="model directory or gs:// prefix; default: the tiny random Llama, written "
                                        "to a temporary directory")
    parser.add_argument("--loaders", default=",".join(LOADERS),
                        help=f"comma-separated --load-format values to compare (default: {','.join(LOADERS)})")
    parser.add_argument("--repeats", type=int, default=1, help="runs per loader; the report gives medians")
    parser.add_argument("--python", type=Path, help="interpreter with vLLM and runai-model-streamer; default: the "
                                                    "cached CPU venv of tools.localvllm")
    parser.add_argument("--streamer-concurrency", type=int, help="RUNAI_STREAMER_CONCURRENCY (reader threads)")
    parser.add_argument("--streamer-memory-limit", type=int,
                        help="RUNAI_STREAMER_MEMORY_LIMIT in bytes (-1 unlimited, 0 minimum)")
    parser.add_argument("--start-timeout", type=float, default=600.0, help="seconds each server may take to be healthy")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="one more server flag, e.g. --server-arg=--tensor-parallel-size=8 (repeatable)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="one more server environment variable (repeatable), e.g. a Cloud Storage emulator")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 every run healthy; 1 a server failed; 2 bad arguments; 3 internal error (--debug)."""
    from offline.cli import guarded

    return guarded(_checked_main, argv, prog="tools.load_bench")


def _checked_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    loaders = [name.strip() for name in args.loaders.split(",") if name.strip()]
    problems = []
    if not loaders or len(set(loaders)) != len(loaders):
        problems.append(f"--loaders: got {args.loaders!r}; give distinct --load-format values, e.g. auto,runai_streamer")
    if args.repeats < 1:
        problems.append(f"--repeats: got {args.repeats}; use 1 or more")
    if args.start_timeout <= 0:
        problems.append(f"--start-timeout: got {args.start_timeout}; use a positive number of seconds")
    if args.model and not args.model.startswith("gs://") and not Path(args.model).is_dir():
        problems.append(f"--model: {args.model!r} is not a directory or a gs:// prefix")
    env_pairs = [pair.partition("=") for pair in args.env]
    problems += [f"--env: got {name!r}; give NAME=VALUE" for name, sep, _ in env_pairs if not sep or not name]
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    env = {**streamer_env(args.streamer_concurrency, args.streamer_memory_limit),
           **{name: value for name, _, value in env_pairs}}
    try:
        results, model = _run(args, loaders, env)
    except LoadBenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"model": model, "repeats": args.repeats, "env": env, "server_args": args.server_arg,
                          "results": {k: v.as_dict() for k, v in results.items()}}, indent=2))
    else:
        print(f"model load, {model}, median of {args.repeats} run(s) per loader:")
        for result in results.values():
            load = "not logged" if result.load_median is None else f"{result.load_median:.2f} s"
            print(f"  {result.loader:16s} ready {result.ready_median:7.1f} s   load (vLLM's log) {load}")
    return 0


def _run(args: argparse.Namespace, loaders: list[str], env: dict[str, str]) -> tuple[dict[str, LoaderResult], str]:
    from tools.localvllm import ensure_vllm_venv, write_tiny_llama

    python = str(args.python) if args.python else str(ensure_vllm_venv())
    with tempfile.TemporaryDirectory(prefix="llm-serving-load-bench-") as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            started = time.monotonic()
            model = str(write_tiny_llama(work / "tiny-llama", python=Path(python)))
            _log(f"tiny model written in {time.monotonic() - started:.1f} s: {model}")
        results = run_loaders(python, model, loaders, args.repeats, start_timeout=args.start_timeout, env=env,
                              extra=args.server_arg, work=work)
    return results, model


def _log(message: str) -> None:
    print(f"[load_bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
