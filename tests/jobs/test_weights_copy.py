"""The weights-copy job's code against real clients: the real ``huggingface_hub`` client talking to
a small Hub-compatible HTTP server (below) through ``HF_ENDPOINT``, and the real
``google-cloud-storage`` client writing to ``gcp-storage-emulator`` through ``STORAGE_EMULATOR_HOST``.
The job runs as the container runs it: a subprocess, judged by its exit status and its output."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_test_reader_token"
REPO = "acme/tiny-model"
REVISION_A = "a" * 40
REVISION_B = "b" * 40
BUCKET = "acme-models"

# Two revisions of a tiny model; B changes the weights and adds a file. original/ is never copied.
REVISIONS = {
    REVISION_A: {"config.json": b'{"architectures": ["LlamaForCausalLM"]}',
                 "model.safetensors": bytes(range(256)) * 64,
                 "original/consolidated.00.pth": b"duplicate"},
    REVISION_B: {"config.json": b'{"architectures": ["LlamaForCausalLM"]}',
                 "model.safetensors": bytes(range(255, -1, -1)) * 80,
                 "tokenizer.json": b'{"version": "1.0"}'},
}


class FakeHub(BaseHTTPRequestHandler):
    """The Hub routes huggingface_hub calls for model_info and hf_hub_download; gated: every
    request needs the one valid token. Records each request so tests can tell a no-op run."""

    requests: list[str] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return False

    def _json(self, status: int, payload: dict, error_code: str = "") -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        if error_code:  # the Hub names what was not found in this header (huggingface_hub reads it)
            self.send_header("X-Error-Code", error_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self, send_body: bool) -> None:
        path = unquote(urlparse(self.path).path)
        FakeHub.requests.append(f"{self.command} {path}")
        if not self._authorized():
            return
        info_prefix = f"/api/models/{REPO}/revision/"
        if path.startswith(info_prefix):
            revision = path.removeprefix(info_prefix)
            if revision not in REVISIONS:
                self._json(404, {"error": f"Invalid rev id: {revision}"}, "RevisionNotFound")
                return
            siblings = [{"rfilename": name, "size": len(data)} for name, data in REVISIONS[revision].items()]
            self._json(200, {"id": REPO, "modelId": REPO, "sha": revision, "private": False, "gated": "manual",
                             "siblings": siblings})
            return
        resolve_prefix = f"/{REPO}/resolve/"
        if path.startswith(resolve_prefix):
            revision, _, name = path.removeprefix(resolve_prefix).partition("/")
            data = REVISIONS.get(revision, {}).get(name)
            if data is None:
                self._json(404, {"error": "Entry not found"})
                return
            self.send_response(200)
            self.send_header("X-Repo-Commit", revision)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if send_body:
                self.wfile.write(data)
            return
        self._json(404, {"error": "Repository not found"}, "RepoNotFound")

    def do_GET(self):
        self._route(send_body=True)

    def do_HEAD(self):
        self._route(send_body=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def storage_emulator():
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def bucket(storage_emulator, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage_emulator)
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    yield client.bucket(BUCKET)


def run_job(hub_url: str, emulator_url: str, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update({"HF_ENDPOINT": hub_url, "STORAGE_EMULATOR_HOST": emulator_url, "GOOGLE_CLOUD_PROJECT": "test",
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(Path(os.environ.get("TMPDIR", "/tmp")) / "hf-home-unused")})
    if token is not None:
        env["HF_TOKEN"] = token
    return subprocess.run([sys.executable, str(ROOT / "jobs" / "weights_copy.py"), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def copy_args(revision: str) -> list[str]:
    return ["--repo", REPO, "--revision", revision, "--bucket", BUCKET, "--prefix", f"models/{REPO}/{revision}"]


def objects(bucket, revision: str) -> dict[str, bytes]:
    prefix = f"models/{REPO}/{revision}/"
    return {blob.name.removeprefix(prefix): blob.download_as_bytes() for blob in bucket.list_blobs(prefix=prefix)}


def test_first_run_copies_second_is_a_no_op_a_new_revision_copies_again(hub, storage_emulator, bucket):
    FakeHub.requests.clear()
    first = run_job(hub, storage_emulator, *copy_args(REVISION_A))
    assert first.returncode == 0, first.stderr
    copied = objects(bucket, REVISION_A)
    expected = {k: v for k, v in REVISIONS[REVISION_A].items() if not k.startswith("original/")}
    assert {k: v for k, v in copied.items() if k != "_COMPLETE"} == expected, sorted(copied)
    marker = json.loads(copied["_COMPLETE"])
    assert marker["revision"] == REVISION_A and marker["files"] == {k: len(v) for k, v in expected.items()}
    downloads = [r for r in FakeHub.requests if r.startswith("GET") and "/resolve/" in r]
    assert len(downloads) == len(expected), FakeHub.requests

    FakeHub.requests.clear()
    second = run_job(hub, storage_emulator, *copy_args(REVISION_A))
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout, second.stdout
    assert FakeHub.requests == [], f"a complete copy must not touch the Hub: {FakeHub.requests}"

    third = run_job(hub, storage_emulator, *copy_args(REVISION_B))
    assert third.returncode == 0, third.stderr
    copied_b = objects(bucket, REVISION_B)
    assert copied_b["model.safetensors"] == REVISIONS[REVISION_B]["model.safetensors"]
    assert json.loads(copied_b["_COMPLETE"])["revision"] == REVISION_B
    assert objects(bucket, REVISION_A)["model.safetensors"] == REVISIONS[REVISION_A]["model.safetensors"], \
        "a new revision must not touch the old copy"


def test_a_truncated_copy_is_copied_again(hub, storage_emulator, bucket):
    assert run_job(hub, storage_emulator, *copy_args(REVISION_A)).returncode == 0
    bucket.blob(f"models/{REPO}/{REVISION_A}/model.safetensors").upload_from_string(b"truncated")
    FakeHub.requests.clear()
    again = run_job(hub, storage_emulator, *copy_args(REVISION_A))
    assert again.returncode == 0, again.stderr
    assert "nothing to do" not in again.stdout
    assert objects(bucket, REVISION_A)["model.safetensors"] == REVISIONS[REVISION_A]["model.safetensors"]


def test_a_wrong_token_fails_with_a_clear_message_and_writes_nothing(hub, storage_emulator, bucket):
    revision = "c" * 40
    result = run_job(hub, storage_emulator, "--repo", REPO, "--revision", revision, "--bucket", BUCKET,
                     "--prefix", f"models/{REPO}/{revision}", token="hf_wrong")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "refused the token in HF_TOKEN (HTTP 401)" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert objects(bucket, revision) == {}


def test_an_unknown_revision_is_invalid_input(hub, storage_emulator, bucket):
    result = run_job(hub, storage_emulator, *copy_args("d" * 40))
    assert result.returncode == 2, result.stderr
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("bad", [["--repo", "not a repo"], ["--bucket", "gs://UPPER"], ["--prefix", "../x"]])
def test_bad_arguments_exit_2_naming_the_argument(hub, storage_emulator, bad):
    args = copy_args(REVISION_A)
    args[args.index(bad[0]) + 1] = bad[1]
    result = run_job(hub, storage_emulator, *args)
    assert result.returncode == 2, result.stderr
    assert bad[0] in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_an_unreachable_hub_is_a_failed_copy(storage_emulator, bucket):
    result = run_job(f"http://127.0.0.1:{_free_port()}", storage_emulator, *copy_args("e" * 40))
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
