"""vLLM's Run:ai model streamer (`--load-format runai_streamer`) on the real CPU server: from a local
directory, timed against the default loader by tools.load_bench on the same files, and from gs://
against a local Cloud Storage emulator (gcp-storage-emulator).

The streamer's Cloud Storage backend has no endpoint setting of its own (run-ai/runai-model-streamer
docs/src/env-vars.md lists RUNAI_STREAMER_OVERRIDE_ENDPOINT_URL for S3-compatible stores only), but
both of its halves honour the Google client libraries' emulator variables: the Python half lists
and fetches the small files with google-cloud-storage (STORAGE_EMULATOR_HOST), and the C++ reader,
built on google-cloud-cpp, reads CLOUD_STORAGE_EMULATOR_ENDPOINT. With anonymous credentials
(RUNAI_STREAMER_GCS_USE_ANONYMOUS_CREDENTIALS) no Google account is needed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from tools import load_bench
from tools.localvllm import LocalServer, free_port

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 480  # a CPU start takes 60-90 s alone, several times that on a shared 2-core machine
BUCKET = "models"


def test_load_bench_times_both_loaders_on_the_same_local_files(vllm_python, tiny_model, capsys):
    code = load_bench.main(["--python", str(vllm_python), "--model", str(tiny_model), "--repeats", "1",
                            "--start-timeout", str(START_TIMEOUT_S), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err[-4000:]
    report = json.loads(out)
    print(f"\n[integration] load bench: {json.dumps(report['results'])}")
    results = report["results"]
    assert set(results) == {"auto", "runai_streamer"}, results
    assert results["runai_streamer"]["streamer_used"] == [True], "the streamer did not read the weights"
    assert results["auto"]["streamer_used"] == [False]
    for loader, result in results.items():
        assert len(result["ready_seconds"]) == 1 and result["ready_median"] > 0, (loader, result)
    assert results["auto"]["load_median"] is not None, "vLLM's default loader logged no load time"


@pytest.fixture
def emulator(tmp_path):
    """gcp-storage-emulator on a free loopback port, its request log in a file; always stopped."""
    port = free_port()
    log = tmp_path / "emulator.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                                 "--port", str(port), "--in-memory"], stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the storage emulator did not start:\n{log.read_text()}") from None
                time.sleep(0.5)
        yield url, log
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _upload(url: str, model_dir: Path, prefix: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage  # type: ignore[attr-defined]  # a namespace package mypy cannot see into

    client = storage.Client(project="local", credentials=AnonymousCredentials(), client_options={"api_endpoint": url})
    bucket = client.create_bucket(BUCKET)
    for path in sorted(model_dir.iterdir()):
        bucket.blob(f"{prefix}/{path.name}").upload_from_filename(str(path))


def test_streamer_loads_from_gs_against_the_storage_emulator(vllm_python, tiny_model, emulator, tmp_path):
    url, emulator_log = emulator
    prefix = "models/tiny/0000000000000000000000000000000000000000"
    _upload(url, tiny_model, prefix)
    port = free_port()
    argv = [str(vllm_python), "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", str(port),
            "--model", f"gs://{BUCKET}/{prefix}", "--load-format", "runai_streamer",
            "--max-model-len", "1024", "--max-num-seqs", "8", "--served-model-name", "tiny"]
    env = {"STORAGE_EMULATOR_HOST": url, "CLOUD_STORAGE_EMULATOR_ENDPOINT": url,
           "RUNAI_STREAMER_GCS_USE_ANONYMOUS_CREDENTIALS": "true", "GOOGLE_CLOUD_PROJECT": "local"}
    with LocalServer(argv, env, port, start_timeout=START_TIMEOUT_S, log_path=tmp_path / "vllm.log") as server:
        print(f"\n[integration] vLLM from gs:// healthy after {server.startup_seconds:.1f} s")
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", timeout=120, max_retries=0)
        completion = client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0)
        assert completion.usage.completion_tokens > 0
        assert load_bench.STREAMER_LINE in server.log_text(), "the streamer did not read the weights"
    requests = emulator_log.read_text()
    weights = [line for line in requests.splitlines() if "model.safetensors?alt=media" in line]
    assert weights and all(" 206 " in line or " 200 " in line for line in weights), requests[-3000:]
    assert any(" 206 " in line for line in weights), "the streamer's ranged reads never reached the emulator"
