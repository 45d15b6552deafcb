"""tools.load_bench without a server: its help, its refusals (exit 2) and how it reads vLLM's load-time
lines. The runs themselves are in tests/integration/test_streamer.py."""

from __future__ import annotations

import pytest

from tools import load_bench


def test_help_exits_0_and_gives_the_gpu_command(capsys):
    with pytest.raises(SystemExit) as done:
        load_bench.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "--load-format" in out and "--streamer-concurrency" in out and "GPU machine" in out, out


@pytest.mark.parametrize("argv, needle", [
    (["--repeats", "0"], "--repeats"),
    (["--loaders", "auto,auto"], "--loaders"),
    (["--model", "/nonexistent/model"], "--model"),
    (["--start-timeout", "0"], "--start-timeout"),
    (["--env", "NOEQUALS"], "--env"),
])
def test_bad_arguments_exit_2_before_any_server_starts(monkeypatch, capsys, argv, needle):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a server would have started")

    monkeypatch.setattr(load_bench, "_run", must_not_run)
    assert load_bench.main(argv) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("log, seconds", [
    ("(Worker) INFO [gpu_model_runner.py:5150] Model loading took 14.9 GiB memory and 9.412 seconds", 9.412),
    ("(Worker) INFO [default_loader.py:502] Loading weights took 3.21 seconds", 3.21),
    ("(Worker) INFO [base_loader.py:82] Initializing model took 0.12 seconds", None),
])
def test_reads_the_load_time_vllm_logs(log, seconds):
    assert load_bench.logged_load_seconds(log) == seconds


def test_streamer_knobs_become_its_environment():
    assert load_bench.streamer_env(16, -1) == {"RUNAI_STREAMER_CONCURRENCY": "16", "RUNAI_STREAMER_MEMORY_LIMIT": "-1"}
    assert load_bench.streamer_env(None, None) == {}


def test_every_run_gets_its_own_vllm_cache(monkeypatch, tmp_path):
    """A compile cache left by one run must not speed up the next loader."""
    from tools import localvllm

    seen: list[dict] = []

    class Recorded:
        def __init__(self, argv, env, port, **kwargs):
            seen.append(dict(env))
            self.startup_seconds = 1.0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def log_text(self):
            return "Loading weights took 0.50 seconds"

    monkeypatch.setattr(localvllm, "LocalServer", Recorded)
    results = load_bench.run_loaders("python", "/m", ["auto", "runai_streamer"], 2, start_timeout=10, env={},
                                     extra=[], work=tmp_path)
    roots = [env["VLLM_CACHE_ROOT"] for env in seen]
    assert len(roots) == 4 and len(set(roots)) == 4, roots
    assert results["auto"].load_seconds == [0.5, 0.5]
