"""tools.vertex_client against a local stand-in for Vertex AI (http.server on 127.0.0.1).

The stand-in records every request and answers like Vertex AI: predictions for the deployed
endpoint, 404 NOT_FOUND for a deleted one, 400 FAILED_PRECONDITION for one without a deployed
model, and 401 UNAUTHENTICATED for any other bearer token. It also stands in for Google's OAuth
token endpoint: a real service-account key file (a fresh RSA key) names it as `token_uri`, so
google-auth's application default credentials sign a JWT, the stand-in verifies it and hands out
the access token, and no request leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.vertex import client_output_keys
from tools import vertex_client

TOKEN = "ya29.test-token-7c41e2"
TOKEN_VAR = "VERTEX_CLIENT_TEST_TOKEN"
PROJECT = "projects/123456789012/locations/us-central1/endpoints"
DEPLOYED, DELETED, COLD = "1111", "4040", "4120"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeVertex:
    base: str
    requests: list[Seen] = field(default_factory=list)
    # The OAuth token endpoint a service-account key file names (`token_uri`): the assertions it
    # received, and the access tokens it hands out in turn (the last one repeats).
    token_requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=lambda: [TOKEN])
    signer_public_key: bytes = b""

    def only(self) -> Seen:
        assert len(self.requests) == 1, f"expected one request to the fake endpoint, got {[r.path for r in self.requests]}"
        return self.requests[0]


# The tutorial's predict instance: text (prompt, sampling, raw_response, optional lora_id) or image
# (prompt, multi_modal_data, sampling). lora_id is a path: gs://... or a Hub repository id.
TEXT_INSTANCE = {"prompt": str, "max_tokens": int, "temperature": float, "top_p": float, "top_k": int,
                 "raw_response": bool}
IMAGE_INSTANCE = {"prompt": str, "multi_modal_data": dict, "max_tokens": int, "temperature": float, "top_p": float}
ADAPTER_PATH = re.compile(r"gs://[a-z0-9][a-z0-9._-]+/\S+|[A-Za-z0-9][\w.-]*/[\w.-]+")


def _predict_shape_problem(body: Any) -> str:
    if not isinstance(body, dict) or list(body) != ["instances"] or not isinstance(body["instances"], list) \
            or len(body["instances"]) != 1 or not isinstance(body["instances"][0], dict):
        return f"expected {{'instances': [one instance]}}, got {body!r}"
    instance = dict(body["instances"][0])
    lora_id = instance.pop("lora_id", None)
    if lora_id is not None and not (isinstance(lora_id, str) and ADAPTER_PATH.fullmatch(lora_id)):
        return f"lora_id {lora_id!r} is not a gs:// path or a Hugging Face repository"
    shape = IMAGE_INSTANCE if "multi_modal_data" in instance else TEXT_INSTANCE
    if lora_id is not None and shape is IMAGE_INSTANCE:
        return "dynamic LoRA does not work with multimodal requests"
    if set(instance) != set(shape):
        return f"instance keys {sorted(instance)} differ from {sorted(shape)}"
    wrong = [key for key, kind in shape.items() if not isinstance(instance[key], kind)]
    return f"instance fields of the wrong type: {wrong}" if wrong else ""


def _chat_shape_problem(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
        return f"expected an OpenAI chat completion request, got {body!r}"
    model = body["model"]
    if model and not ADAPTER_PATH.fullmatch(model):
        return f"model {model!r} is neither empty (the base model) nor an adapter path"
    return ""


def _handler(fake: FakeVertex):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _token(self, raw: bytes) -> None:
            """Google's OAuth 2.0 JWT-bearer grant: verify the signed assertion, hand out a token."""
            import urllib.parse

            import google.auth.jwt

            form = dict(urllib.parse.parse_qsl(raw.decode()))
            fake.token_requests.append(form)
            try:
                claims = google.auth.jwt.decode(form.get("assertion", ""), certs=fake.signer_public_key,
                                                audience="https://oauth2.googleapis.com/token")
            except ValueError as error:
                return self._answer(400, {"error": "invalid_grant", "error_description": str(error)})
            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or \
                    "cloud-platform" not in claims.get("scope", ""):
                return self._answer(400, {"error": "invalid_scope", "error_description": f"claims {claims}"})
            token = fake.issued.pop(0) if len(fake.issued) > 1 else fake.issued[0]
            return self._answer(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path == "/token":
                return self._token(raw)
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                body = raw.decode(errors="replace")
            fake.requests.append(Seen("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._answer(401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                                    "message": "Request had invalid authentication credentials."}})
            if f"/endpoints/{DELETED}" in self.path:
                return self._answer(404, {"error": {"code": 404, "status": "NOT_FOUND",
                                                    "message": f'Endpoint "{PROJECT}/{DELETED}" not found.'}})
            if f"/endpoints/{COLD}" in self.path:
                return self._answer(400, {"error": {"code": 400, "status": "FAILED_PRECONDITION",
                                                    "message": "Endpoint does not have any deployed model."}})
            if self.path.endswith(":predict"):
                problem = _predict_shape_problem(body)
                if problem:
                    return self._answer(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": problem}})
                instance = body["instances"][0]
                return self._answer(200, {"predictions": [f"Prompt:\n{instance['prompt']}\nOutput:\nA car is a vehicle."],
                                          "deployedModelId": "42"})
            if self.path.endswith("/chat/completions"):
                problem = _chat_shape_problem(body)
                if problem:
                    return self._answer(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": problem}})
                return self._answer(200, {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "A puppy on grass."}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
                })
            return self._answer(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": f"no route {self.path}"}})

    return Handler


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVertex]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    fake = FakeVertex(base="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def _entry(fake: FakeVertex, endpoint_id: str, **extra: Any) -> dict[str, Any]:
    """A deployment entry with every key of the contract (components.vertex.VertexClientOutputs)."""
    name = f"{PROJECT}/{endpoint_id}"
    entry = {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct", "predict_url": f"{fake.base}/v1/{name}:predict",
             "openai_base_url": f"{fake.base}/v1beta1/{name}", "endpoint_name": name, "endpoint_id": endpoint_id,
             "region": "us-central1", "dedicated": False, "logs_url": "", "lora_adapters": {},
             "deployed_model_id": "42", "managed": True, "replacement": "any change replaces the endpoint", **extra}
    assert sorted(entry) == sorted(client_output_keys()), "test entry drifted from the client outputs contract"
    return entry


@pytest.fixture
def outputs(fake: FakeVertex, tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"deployments": {
        "llama": _entry(fake, DEPLOYED, lora_adapters={"support": "gs://models/loras/support-v3",
                                                       "sql": "acme/llama-3.1-8b-sql-lora"},
                        logs_url="https://console.cloud.google.com/logs/query;query=x?project=p"),
        "gone": _entry(fake, DELETED),
        "cold": _entry(fake, COLD, logs_url="https://console.cloud.google.com/logs/query;query=cold?project=p"),
        "web": {"platform": "cloudrun", "url": "https://web.run.app"},
    }}))
    return path


def client(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = vertex_client.main(list(argv))
    out, err = capsys.readouterr()
    assert TOKEN not in out + err, f"vertex_client {' '.join(argv)}: printed the access token"
    return status, out, err


def test_text_predict_request_shape(fake: FakeVertex, outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "--token", TOKEN_VAR,
                              "predict", "--prompt", "What is a car?", "--max-tokens", "50", "--top-k", "1")
    assert status == 0, f"predict to llama exited {status}: {err}"
    seen = fake.only()
    assert seen.path == f"/v1/{PROJECT}/{DEPLOYED}:predict", f"predict to llama hit {seen.path}"
    assert seen.headers.get("authorization") == f"Bearer {TOKEN}", "predict to llama: wrong Authorization header"
    assert seen.headers.get("content-type") == "application/json", f"predict to llama: content type {seen.headers}"
    assert seen.body == {"instances": [{"prompt": "What is a car?", "max_tokens": 50, "temperature": 1.0,
                                        "top_p": 1.0, "top_k": 1, "raw_response": False}]}, \
        f"predict to llama: body was {seen.body}"
    assert "A car is a vehicle." in out, f"predict to llama: printed {out!r}"


def test_text_predict_with_lora_adapter_name(fake: FakeVertex, outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "--token", TOKEN_VAR,
                            "predict", "--lora", "support", "--raw-response")
    assert status == 0, f"predict with LoRA to llama exited {status}: {err}"
    seen = fake.only()
    assert seen.path == f"/v1/{PROJECT}/{DEPLOYED}:predict", f"predict with LoRA to llama hit {seen.path}"
    assert seen.body == {"instances": [{"prompt": "What is a car?", "max_tokens": 50, "temperature": 1.0, "top_p": 1.0,
                                        "top_k": 1, "raw_response": True,
                                        "lora_id": "gs://models/loras/support-v3"}]}, \
        f"predict with LoRA to llama: body was {seen.body}"


def test_the_stand_in_refuses_an_adapter_name_sent_as_lora_id(fake: FakeVertex) -> None:
    """The request the client used to send ("lora_id": "support") is refused, so the tests above can fail."""
    import urllib.error
    import urllib.request

    instance = {"prompt": "What is a car?", "max_tokens": 50, "temperature": 1.0, "top_p": 1.0, "top_k": 1,
                "raw_response": False, "lora_id": "support"}
    request = urllib.request.Request(f"{fake.base}/v1/{PROJECT}/{DEPLOYED}:predict", method="POST",
                                     data=json.dumps({"instances": [instance]}).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400, f"the stand-in answered {refused.value.code} to lora_id 'support'"
    assert "lora_id 'support' is not a gs:// path" in refused.value.read().decode(), "wrong refusal"


def test_chat_with_lora_adapter_name(fake: FakeVertex, outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "--token", TOKEN_VAR,
                              "chat", "--message", "What is a car?", "--lora", "support")
    assert status == 0, f"chat with LoRA to llama exited {status}: {err}"
    seen = fake.only()
    assert seen.path == f"/v1beta1/{PROJECT}/{DEPLOYED}/chat/completions", f"chat with LoRA to llama hit {seen.path}"
    assert seen.body["model"] == "gs://models/loras/support-v3", f"chat with LoRA to llama: model was {seen.body['model']!r}"
    assert seen.body["messages"] == [{"role": "user", "content": "What is a car?"}], f"chat to llama: {seen.body}"
    assert out.strip() == "A puppy on grass.", f"chat with LoRA to llama: printed {out!r}"


@pytest.mark.parametrize("command", ["predict", "chat"])
def test_unknown_adapter_name_is_refused_with_the_known_ones(command: str, fake: FakeVertex, outputs: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "--token", TOKEN_VAR,
                            command, "--lora", "suport")
    assert status == 2, f"{command} to llama with adapter 'suport': exit {status}, {err}"
    assert "adapter 'suport' is not among the adapters of deployment 'llama' (known adapters: sql, support)" in err, err
    assert not fake.requests, f"{command} to llama with an unknown adapter still sent {[r.path for r in fake.requests]}"


@pytest.mark.parametrize("path", ["gs://other-bucket/loras/x", "acme/llama-3.1-8b-sql-lora"])
def test_literal_adapter_path_passes_through(path: str, fake: FakeVertex, outputs: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "--token", TOKEN_VAR,
                            "predict", "--lora", path)
    assert status == 0, f"predict to llama with lora {path}: exit {status}, {err}"
    lora_id = fake.only().body["instances"][0]["lora_id"]
    assert lora_id == path, f"predict to llama: lora_id was {lora_id!r}, expected {path!r} unchanged"


def test_entry_missing_a_contract_key_is_refused(fake: FakeVertex, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = _entry(fake, DEPLOYED)
    del entry["lora_adapters"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"deployments": {"llama": entry}}))
    status, _, err = client(capsys, "--outputs", str(path), "--deployment", "llama", "--token", TOKEN_VAR, "predict")
    assert status == 2 and "deployment 'llama' in" in err and "lacks lora_adapters" in err, f"exit {status}: {err}"
    assert not fake.requests, "a request was sent for an entry outside the contract"


def test_image_predict_request_shape(fake: FakeVertex, outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "--token", TOKEN_VAR,
                              "predict-image", "--image-url", "https://example.com/car.jpg")
    assert status == 0, f"image predict to llama exited {status}: {err}"
    seen = fake.only()
    assert seen.path == f"/v1/{PROJECT}/{DEPLOYED}:predict", f"image predict to llama hit {seen.path}"
    assert seen.body == {"instances": [{"prompt": "<|begin_of_text|><|image|>This is a picture of",
                                        "multi_modal_data": {"image": "https://example.com/car.jpg"},
                                        "max_tokens": 64, "temperature": 0.5, "top_p": 0.95}]}, \
        f"image predict to llama: body was {seen.body}"
    assert "Output:" in out, f"image predict to llama: printed {out!r}"


def test_chat_completions_request_shape(fake: FakeVertex, outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "--token", TOKEN_VAR,
                              "chat", "--message", "Describe this image?", "--image-url", "https://example.com/p.jpg",
                              "--max-tokens", "50", "--temperature", "1.0")
    assert status == 0, f"chat to llama exited {status}: {err}"
    seen = fake.only()
    assert seen.path == f"/v1beta1/{PROJECT}/{DEPLOYED}/chat/completions", f"chat to llama hit {seen.path}"
    assert seen.headers.get("authorization") == f"Bearer {TOKEN}", "chat to llama: wrong Authorization header"
    body = seen.body
    assert body["model"] == "", f"chat to llama: model was {body.get('model')!r}"
    assert body["max_tokens"] == 50 and body["temperature"] == 1.0, f"chat to llama: body was {body}"
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/p.jpg"}},
        {"type": "text", "text": "Describe this image?"}]}], f"chat to llama: messages were {body['messages']}"
    assert out.strip() == "A puppy on grass.", f"chat to llama: printed {out!r}"


def test_outputs_from_stdin(fake: FakeVertex, outputs: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(outputs.read_text()))
    status, _, err = client(capsys, "--outputs", "-", "--deployment", "llama", "--token", TOKEN_VAR, "predict")
    assert status == 0, f"predict to llama with outputs on stdin exited {status}: {err}"


def test_missing_outputs_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    status, _, err = client(capsys, "--outputs", str(missing), "--deployment", "llama", "--token", TOKEN_VAR, "predict")
    assert status == 2, f"missing outputs file: exit {status}"
    assert f"outputs file {missing} does not exist" in err and "pulumi stack output --json --show-secrets" in err, err


def test_unknown_deployment_lists_known_ones(outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "mistral", "--token", TOKEN_VAR, "predict")
    assert status == 2, f"unknown deployment mistral: exit {status}"
    assert "deployment 'mistral' is not in" in err and "known deployments: cold, gone, llama, web" in err, err


def test_non_vertex_deployment(outputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "web", "--token", TOKEN_VAR, "chat")
    assert status == 2, f"cloudrun deployment web: exit {status}"
    assert "deployment 'web' runs on platform 'cloudrun', not vertex" in err, err


def test_outputs_without_show_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hidden.json"
    path.write_text(json.dumps({"deployments": "[secret]"}))
    status, _, err = client(capsys, "--outputs", str(path), "--deployment", "llama", "--token", TOKEN_VAR, "predict")
    assert status == 2 and "--show-secrets" in err, f"outputs with hidden deployments: exit {status}, {err}"


@pytest.mark.parametrize("command", ["predict", "predict-image", "chat"])
def test_deleted_endpoint_is_reported_as_not_deployed(command: str, fake: FakeVertex, outputs: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "gone", "--token", TOKEN_VAR, command)
    assert status == 2, f"{command} to gone (HTTP 404): exit {status}, {err}"
    assert f"{PROJECT}/{DELETED} failed (HTTP 404 NOT_FOUND)" in err, f"{command} to gone: {err}"
    assert "no deployed model" in err and "pulumi up" in err, f"{command} to gone: {err}"
    assert len(err.strip().splitlines()) == 1, f"{command} to gone: message is not one line: {err!r}"


def test_endpoint_without_model_is_reported_as_not_deployed(fake: FakeVertex, outputs: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "cold", "--token", TOKEN_VAR, "predict")
    assert status == 2, f"predict to cold (FAILED_PRECONDITION): exit {status}, {err}"
    assert "HTTP 400 FAILED_PRECONDITION" in err and "no deployed model" in err, f"predict to cold: {err}"
    assert "logs/query;query=cold" in err, f"predict to cold: logs link missing: {err}"


@pytest.mark.parametrize("command", ["predict", "chat"])
def test_rejected_credentials(command: str, fake: FakeVertex, outputs: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STALE_TOKEN", "ya29.expired")
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "--token", "STALE_TOKEN", command)
    assert status == 2, f"{command} to llama with a stale token: exit {status}, {err}"
    assert "was refused (HTTP 401 UNAUTHENTICATED)" in err and "gcloud auth application-default login" in err, f"{command} to llama: {err}"
    assert "ya29.expired" not in err, f"{command} to llama: printed the stale token"
    assert fake.only().headers["authorization"] == "Bearer ya29.expired", f"{command} to llama: header not sent"


def test_empty_token_variable(outputs: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNSET_TOKEN_VAR", raising=False)
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "--token", "UNSET_TOKEN_VAR", "predict")
    assert status == 2 and "environment variable UNSET_TOKEN_VAR (from --token) is unset or empty" in err, err


@pytest.fixture
def no_ambient_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No key file, an empty gcloud config, no metadata-server probe, and a `gcloud` that records any call."""
    import google.auth.compute_engine._metadata as metadata

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud-config"))
    monkeypatch.setattr(metadata, "_NO_GCE_CHECK", True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "gcloud-calls"
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho {TOKEN}\n')
    gcloud.chmod(gcloud.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return calls


def _service_account_key(fake: FakeVertex, tmp_path: Path) -> Path:
    """A real service-account key file (a fresh RSA key) whose token_uri is the local stand-in."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake.signer_public_key = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "key.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "acme-llm-dev", "private_key_id": "k1", "private_key": private,
        "client_email": "caller@acme-llm-dev.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"{fake.base}/token"}))
    return path


def test_no_credentials_at_all(outputs: Path, no_ambient_credentials: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "predict")
    assert status == 2, f"predict to llama without credentials: exit {status}, {err}"
    assert "no Google credentials found" in err and "gcloud auth application-default login" in err, err
    assert not no_ambient_credentials.exists(), "the client started a gcloud process for a token"


@pytest.mark.parametrize("command", ["predict", "chat"])
def test_application_default_credentials_are_refreshed_through_google_auth(
        command: str, fake: FakeVertex, outputs: Path, tmp_path: Path, no_ambient_credentials: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(_service_account_key(fake, tmp_path)))
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", command)
    assert status == 0, f"{command} to llama with a service-account key: exit {status}, {err}"
    assert len(fake.token_requests) == 1, f"{command}: token endpoint called {len(fake.token_requests)} times"
    assert fake.only().headers["authorization"] == f"Bearer {TOKEN}", f"{command}: the refreshed token was not sent"
    assert not no_ambient_credentials.exists(), f"{command}: the client started a gcloud process"


def test_a_token_the_endpoint_rejects_is_refreshed_once_and_retried(
        fake: FakeVertex, outputs: Path, tmp_path: Path, no_ambient_credentials: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake.issued = ["ya29.revoked-early", TOKEN]
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(_service_account_key(fake, tmp_path)))
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "predict")
    assert status == 0, f"predict to llama after a rejected token: exit {status}, {err}"
    sent = [r.headers["authorization"] for r in fake.requests]
    assert sent == ["Bearer ya29.revoked-early", f"Bearer {TOKEN}"], f"predict to llama sent {sent}"
    assert len(fake.token_requests) == 2, f"token endpoint called {len(fake.token_requests)} times"


def test_credentials_the_token_endpoint_refuses_are_a_usage_error(
        fake: FakeVertex, outputs: Path, tmp_path: Path, no_ambient_credentials: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    key = _service_account_key(fake, tmp_path)
    _service_account_key(fake, tmp_path / "other")  # the endpoint now trusts another key only
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama", "predict")
    assert status == 2, f"predict to llama with refused credentials: exit {status}, {err}"
    assert "could not be refreshed" in err and "invalid_grant" in err, err
    assert not fake.requests, "a request was sent without a token"


# ---------------------------------------------------------------------------- end to end


def test_stack_outputs_carry_adapters_the_client_sends_by_name(fake: FakeVertex, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Config adapters -> the real program under the mock engine -> its exported outputs -> the client.

    Only the scheme and host of the exported URLs are pointed at the local stand-in; every other
    byte of the deployment entry is what the program exported."""
    from offline.plan import plan, read_stack_file

    values, secret_keys = read_stack_file(Path(__file__).resolve().parents[2] / "Pulumi.dev.yaml")
    deployments = values["llm-serving:deployments"]
    deployments["llama-8b"]["lora"] = {"adapters": {"support": "loras/support-v3",
                                                    "sql": "hf://acme/llama-3.1-8b-sql-lora"}}
    result = plan(values, secret_keys, stack="dev", source="Pulumi.dev.yaml")
    assert result.run is not None, f"dev with adapters did not plan: {[c.render() for c in result.checks]}"
    exported = result.run.outputs["deployments"].value
    bucket = result.run.outputs["model_bucket"].value
    entry = exported["llama-8b"]
    assert entry["lora_adapters"] == {"support": f"gs://{bucket}/loras/support-v3", "sql": "acme/llama-3.1-8b-sql-lora"}, \
        f"llama-8b outputs: lora_adapters were {entry['lora_adapters']}"
    endpoint_id = entry["endpoint_id"]
    for key in ("predict_url", "openai_base_url"):
        entry[key] = re.sub(r"^https://[^/]+", fake.base, entry[key])
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"deployments": exported}))

    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama-8b", "--token", TOKEN_VAR,
                            "predict", "--lora", "support")
    assert status == 0, f"predict with LoRA to llama-8b exited {status}: {err}"
    status, _, err = client(capsys, "--outputs", str(outputs), "--deployment", "llama-8b", "--token", TOKEN_VAR,
                            "chat", "--lora", "sql")
    assert status == 0, f"chat with LoRA to llama-8b exited {status}: {err}"

    predict_seen, chat_seen = fake.requests
    assert predict_seen.path.endswith(f"/endpoints/{endpoint_id}:predict"), f"predict hit {predict_seen.path}"
    assert predict_seen.body["instances"][0]["lora_id"] == f"gs://{bucket}/loras/support-v3", \
        f"predict to llama-8b: lora_id was {predict_seen.body['instances'][0].get('lora_id')!r}"
    assert chat_seen.path.endswith(f"/endpoints/{endpoint_id}/chat/completions"), f"chat hit {chat_seen.path}"
    assert chat_seen.body["model"] == "acme/llama-3.1-8b-sql-lora", f"chat to llama-8b: model was {chat_seen.body['model']!r}"
