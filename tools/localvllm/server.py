"""A vLLM server process on 127.0.0.1: healthy on entry within a time limit, its whole process
group killed on exit."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from tools.argv import flag_values

LOOPBACK = "127.0.0.1"


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


BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TZ")
DEFAULT_SERVER_ENV = {
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
        hosts = flag_values(argv, ("--host",))
        if not hosts:
            raise ValueError("argv must bind explicitly with --host 127.0.0.1 "
                             "(without --host, vLLM listens on every interface)")
        bad = [h for h in hosts if h != LOOPBACK]
        if bad:
            raise ValueError(f"refusing to bind {bad[0]!r}: local servers bind {LOOPBACK} only")
        ports = flag_values(argv, ("--port",))
        if any(p != str(port) for p in ports):
            raise ValueError(f"argv has --port {ports} but the server is expected on {port}")
        if start_timeout <= 0 or stop_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.argv = argv
        self.port = int(port)
        self.start_timeout = float(start_timeout)
        self.stop_timeout = float(stop_timeout)
        merged = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        merged.update({str(k): str(v) for k, v in env.items()})
        for key, value in DEFAULT_SERVER_ENV.items():
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
