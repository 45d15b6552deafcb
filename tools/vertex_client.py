"""Send the Vertex AI vLLM tutorial's requests to a deployed endpoint, with a LoRA adapter by name.

    python -m tools.vertex_client --outputs FILE|- --deployment NAME [--token ENV_VAR] \\
        {predict,predict-image,chat} [--lora NAME|PATH] [options]

``--outputs`` is the JSON that ``pulumi stack output --json --show-secrets`` prints (a file, or
``-`` for standard input). A deployment's entry under ``deployments`` is exactly
``components.vertex.VertexClientOutputs`` (the stack exports it, this client reads it), e.g.::

    "llama-8b": {
      "platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct", "region": "us-central1",
      "endpoint_name": "projects/<n>/locations/<r>/endpoints/<id>", "endpoint_id": "<id>",
      "dedicated": true,
      "predict_url": "https://<id>.<r>-<n>.prediction.vertexai.goog/v1/projects/<n>/.../endpoints/<id>:predict",
      "openai_base_url": "https://<id>.<r>-<n>.prediction.vertexai.goog/v1beta1/projects/<n>/.../endpoints/<id>",
      "logs_url": "https://console.cloud.google.com/logs/query;...",
      "lora_adapters": {"support": "gs://<bucket>/loras/support-v3", "sql": "acme/llama-sql-lora"},
      "deployed_model_id": "<id>", "managed": true, "replacement": "..."
    }

Requests (the tutorial's, https://cloud.google.com/vertex-ai/generative-ai/docs/open-models/vllm/use-vllm):
  predict        POST predict_url  {"instances": [{"prompt", "max_tokens", "temperature", "top_p",
                 "top_k", "raw_response", "lora_id"?}]}
  predict-image  POST predict_url  {"instances": [{"prompt": "<|begin_of_text|><|image|>...",
                 "multi_modal_data": {"image": url}, "max_tokens", "temperature", "top_p"}]}
  chat           the OpenAI client with base_url=openai_base_url (POST .../chat/completions);
                 model="" for the base model, or the adapter's path with --lora

``--lora`` takes an adapter name from the deployment's ``lora_adapters`` and sends its path (the
gs:// path in the model bucket, or the Hub repository id); a gs:// path or ``<org>/<repo>`` is
sent as given. An unknown name is refused with the known ones. Adapter names never contain a
slash, so a name and a path cannot be confused.

Credentials come from ``google-auth``: application default credentials (``google.auth.default``:
``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``, or the metadata
server on Google Cloud), refreshed through google-auth's ``requests`` transport whenever the
token is missing or expired; or, with ``--token VAR``, an access token already obtained, held in
the environment variable VAR. No ``gcloud`` process is started. The token is never printed.
The predict routes go through ``google.auth.transport.requests.AuthorizedSession`` (which
refreshes and sends the token); chat completions through the ``openai`` client. Usage problems (outputs, deployment, adapter,
credentials, endpoint not deployed) exit with status 2 and one sentence on standard error; other
request failures exit with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from components.lora import is_literal_path
from components.vertex import client_output_keys
from offline.cli import ToolError

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

USAGE_ERROR = 2
REQUEST_ERROR = 1
# The whole contract: every key the stack exports for a Vertex AI deployment.
REQUIRED_KEYS = client_output_keys()
TUTORIAL_IMAGE_URL = "https://images.pexels.com/photos/1254140/pexels-photo-1254140.jpeg"
IMAGE_PROMPT_PREFIX = "<|begin_of_text|><|image|>"
LOGIN_HINT = ("log in with `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS), "
              "or pass --token VAR with VAR holding `gcloud auth print-access-token`")


class ClientError(ToolError):
    """A problem to report in one sentence, with the exit status to use (by default: invalid input)."""

    def __init__(self, message: str, status: int = USAGE_ERROR):
        super().__init__(message, status)


@dataclass(frozen=True)
class Deployment:
    name: str
    predict_url: str
    openai_base_url: str
    endpoint_name: str
    region: str
    dedicated: bool
    logs_url: str = ""
    lora_adapters: Mapping[str, str] = field(default_factory=dict)

    def adapter_path(self, adapter: str) -> str:
        """The `lora_id` to send for an adapter name, or a literal path unchanged."""
        if is_literal_path(adapter):
            return adapter
        if adapter in self.lora_adapters:
            return self.lora_adapters[adapter]
        known = ", ".join(sorted(self.lora_adapters)) or "none"
        raise ClientError(f"adapter {adapter!r} is not among the adapters of deployment {self.name!r} (known adapters: "
                          f"{known}); give a known name, or a gs:// path or <org>/<repo> to send as it is")


# ---------------------------------------------------------------------------
# Stack outputs


def load_deployment(source: str, name: str, stdin=None) -> Deployment:
    """The deployment ``name`` from stack outputs JSON (a path, or ``-`` for stdin)."""
    if source == "-":
        text = (stdin or sys.stdin).read()
        where = "standard input"
    else:
        where = source
        try:
            with open(source, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            raise ClientError(f"outputs file {source} does not exist; write it with "
                              f"`pulumi stack output --json --show-secrets > {source}`") from None
        except OSError as error:
            raise ClientError(f"outputs file {source} cannot be read ({error.strerror})") from None
    try:
        outputs = json.loads(text)
    except json.JSONDecodeError as error:
        raise ClientError(f"outputs in {where} are not JSON ({error.msg} at line {error.lineno}); "
                          "pass what `pulumi stack output --json --show-secrets` prints") from None
    deployments = outputs.get("deployments") if isinstance(outputs, dict) else None
    if deployments == "[secret]":
        raise ClientError(f"outputs in {where} hide `deployments` as [secret]; "
                          "export them with `pulumi stack output --json --show-secrets`")
    if not isinstance(deployments, dict):
        raise ClientError(f"outputs in {where} have no `deployments` map; "
                          "pass the JSON of a stack of this project (`pulumi stack output --json --show-secrets`)")
    if name not in deployments:
        known = ", ".join(sorted(deployments)) or "none"
        raise ClientError(f"deployment {name!r} is not in {where} (known deployments: {known})")
    entry = deployments[name]
    if not isinstance(entry, dict):
        raise ClientError(f"deployment {name!r} in {where} is {entry!r}, not a map; "
                          "export outputs with `pulumi stack output --json --show-secrets`")
    platform = entry.get("platform")
    if platform != "vertex":
        raise ClientError(f"deployment {name!r} runs on platform {platform!r}, not vertex; "
                          "this client only talks to Vertex AI endpoints")
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise ClientError(f"deployment {name!r} in {where} lacks {', '.join(missing)}; "
                          "run `pulumi up` so the stack exports them, then export the outputs again")
    hidden = [key for key in REQUIRED_KEYS if entry[key] == "[secret]"]
    if hidden:
        raise ClientError(f"deployment {name!r} in {where} hides {', '.join(hidden)} as [secret]; "
                          "export outputs with `pulumi stack output --json --show-secrets`")
    return Deployment(
        name=name,
        predict_url=str(entry["predict_url"]),
        openai_base_url=str(entry["openai_base_url"]),
        endpoint_name=str(entry["endpoint_name"]),
        region=str(entry["region"]),
        dedicated=bool(entry["dedicated"]),
        logs_url=str(entry["logs_url"] or ""),
        lora_adapters=_adapters(entry["lora_adapters"], name, where),
    )


def _adapters(value: Any, name: str, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ClientError(f"deployment {name!r} in {where} has lora_adapters {value!r}, not a map of name to path; "
                          "export outputs with `pulumi stack output --json --show-secrets`")
    return dict(value)


# ---------------------------------------------------------------------------
# Credentials

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def credentials_for(env_var: Optional[str]) -> Credentials:
    """Google credentials with a valid access token; ClientError (status 2) when there are none.

    ``--token VAR``: the token in VAR, as google-auth credentials that cannot refresh. Otherwise
    application default credentials, refreshed here through google-auth's requests transport so a
    missing or expired token is replaced before any request is sent."""
    import google.auth
    import google.auth.exceptions
    import google.oauth2.credentials

    if env_var:
        token = os.environ.get(env_var, "").strip()
        if not token:
            raise ClientError(f"environment variable {env_var} (from --token) is unset or empty; "
                              f"set it to a fresh `gcloud auth print-access-token`")
        return google.oauth2.credentials.Credentials(token=token)
    try:
        credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except google.auth.exceptions.DefaultCredentialsError:
        raise ClientError(f"no Google credentials found; {LOGIN_HINT}") from None
    _refresh(credentials)
    return credentials


def _can_refresh(credentials: Credentials) -> bool:
    import google.oauth2.credentials

    return not (isinstance(credentials, google.oauth2.credentials.Credentials) and credentials.refresh_token is None)


def _refresh(credentials: Credentials) -> None:
    import google.auth.exceptions
    import google.auth.transport.requests

    if credentials.valid:
        return
    try:
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.RefreshError as error:
        raise ClientError(f"the Google credentials could not be refreshed ({_clip(str(error), 160)}); "
                          f"{LOGIN_HINT}") from None
    except google.auth.exceptions.TransportError:
        raise ClientError("the Google token endpoint could not be reached to refresh the credentials; "
                          "check the network, or pass --token VAR") from None
    if not credentials.token:
        raise ClientError(f"the Google credentials gave no access token; {LOGIN_HINT}")


# ---------------------------------------------------------------------------
# Requests


def text_instance(prompt: str, max_tokens: int, temperature: float, top_p: float, top_k: int,
                  raw_response: bool, lora_id: Optional[str]) -> dict[str, Any]:
    instance: dict[str, Any] = {"prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                                "top_p": top_p, "top_k": top_k, "raw_response": raw_response}
    if lora_id:
        instance["lora_id"] = lora_id
    return instance


def image_instance(prompt: str, image_url: str, max_tokens: int, temperature: float, top_p: float) -> dict[str, Any]:
    if not prompt.startswith(IMAGE_PROMPT_PREFIX):
        prompt = IMAGE_PROMPT_PREFIX + prompt
    return {"prompt": prompt, "multi_modal_data": {"image": image_url}, "max_tokens": max_tokens,
            "temperature": temperature, "top_p": top_p}


def predict(deployment: Deployment, credentials: Credentials, instances: list[dict[str, Any]], timeout: float,
            what: str = "predict request") -> dict[str, Any]:
    import google.auth.transport.requests
    import requests

    # A 401 makes the session refresh the credentials and retry once; a bare token cannot refresh,
    # so its 401 is reported as it is.
    session = google.auth.transport.requests.AuthorizedSession(
        credentials, refresh_status_codes=(401,) if _can_refresh(credentials) else ())
    token = credentials.token or ""
    try:
        response = session.post(deployment.predict_url, json={"instances": instances}, timeout=timeout)
    except requests.exceptions.Timeout:
        raise ClientError(f"{what} to {deployment.endpoint_name} timed out after {timeout:g} s; "
                          "lower max_tokens or raise --timeout", REQUEST_ERROR) from None
    except requests.exceptions.ConnectionError as error:
        raise ClientError(f"{what} to {deployment.endpoint_name} could not reach {deployment.predict_url} "
                          f"({_clip(_scrub(str(error), token), 160)})", REQUEST_ERROR) from None
    finally:
        session.close()
    token = credentials.token or token  # the session may have refreshed it
    if response.status_code >= 400:
        raise _http_problem(deployment, what, response.status_code, response.text, token)
    try:
        return response.json()
    except ValueError:
        raise ClientError(f"{what} to {deployment.endpoint_name} answered with non-JSON text: "
                          f"{_clip(_scrub(response.text, token))}", REQUEST_ERROR) from None


def chat(deployment: Deployment, credentials: Credentials, message: str, image_url: Optional[str], max_tokens: int,
         temperature: float, timeout: float, lora_id: Optional[str] = None) -> Any:
    import openai

    content: Any = message
    if image_url:
        content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": message}]
    _refresh(credentials)  # the OpenAI client sends the token as it is: make sure it is current
    token = credentials.token or ""
    client = openai.OpenAI(base_url=deployment.openai_base_url, api_key=token, max_retries=0, timeout=timeout)
    what = "chat completions request"
    try:
        # `model` is the field vLLM's OpenAI-compatible server selects an adapter by; "" is the base model.
        return client.chat.completions.create(
            model=lora_id or "", messages=[{"role": "user", "content": content}],
            max_tokens=max_tokens, temperature=temperature,
        )
    except openai.APIStatusError as error:
        text = error.response.text if error.response is not None else str(error.message)
        raise _http_problem(deployment, what, error.status_code, text, token) from None
    except openai.APITimeoutError:
        raise ClientError(f"{what} to {deployment.endpoint_name} timed out after {timeout:g} s; "
                          "lower max_tokens or raise --timeout", REQUEST_ERROR) from None
    except openai.APIConnectionError:
        raise ClientError(f"{what} to {deployment.endpoint_name} could not reach "
                          f"{deployment.openai_base_url}", REQUEST_ERROR) from None


def _http_problem(deployment: Deployment, what: str, status: int, body: str, token: str) -> ClientError:
    body = _scrub(body, token)
    code, detail = _google_error(body)
    label = f"HTTP {status}" + (f" {code}" if code else "")
    if status in (401, 403) or code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return ClientError(f"{what} to {deployment.endpoint_name} was refused ({label}): the credentials are "
                           f"missing, expired or lack roles/aiplatform.user on the project; {LOGIN_HINT}")
    if status == 404 or code in ("NOT_FOUND", "FAILED_PRECONDITION"):
        logs = f", and its logs at {deployment.logs_url}" if deployment.logs_url else ""
        return ClientError(f"{what} to {deployment.endpoint_name} failed ({label}): the endpoint has no deployed "
                           f"model yet or was deleted; check that `pulumi up` finished{logs}"
                           + (f" (server said: {_clip(detail)})" if detail else ""))
    if "dedicated" in body.lower() and not deployment.dedicated:
        return ClientError(f"{what} to {deployment.endpoint_name} failed ({label}): the endpoint only accepts its "
                           "dedicated DNS; re-export the stack outputs so the URLs use it")
    return ClientError(f"{what} to {deployment.endpoint_name} failed ({label}): {_clip(detail or body)}",
                       REQUEST_ERROR)


def _google_error(body: str) -> tuple[str, str]:
    """(status, message) from a Google API error body (an object or a one-element list)."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, ValueError):
        return "", body.strip()
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("status") or ""), str(error.get("message") or "")
    if isinstance(data, dict) and "detail" in data:  # a server behind the endpoint, e.g. FastAPI
        return "", str(data["detail"])
    return "", body.strip()


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "[token]") if token else text


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------------------
# Command line


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m tools.vertex_client",
                                  description="Send predict and chat requests to a Vertex AI vLLM deployment.")
    top.add_argument("--outputs", required=True,
                     help="stack outputs JSON (`pulumi stack output --json --show-secrets`), or - for stdin")
    top.add_argument("--deployment", required=True, help="deployment name (a key of the `deployments` output)")
    top.add_argument("--token", metavar="ENV_VAR",
                     help="name of an environment variable holding a Google access token "
                          "(default: application default credentials, refreshed by google-auth)")
    top.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for an answer (default 120)")
    top.add_argument("--json", action="store_true", help="print the whole response as JSON")
    commands = top.add_subparsers(dest="command", required=True)

    text = commands.add_parser("predict", help="text prompt through the endpoint's predict route")
    text.add_argument("--prompt", default="What is a car?")
    text.add_argument("--max-tokens", type=int, default=50)
    text.add_argument("--temperature", type=float, default=1.0)
    text.add_argument("--top-p", type=float, default=1.0)
    text.add_argument("--top-k", type=int, default=1)
    text.add_argument("--raw-response", action="store_true",
                      help="return the model output only (default: 'Prompt: ... Output: ...')")
    text.add_argument("--lora", "--lora-id", dest="lora", metavar="NAME|PATH",
                      help="adapter name from the deployment's lora_adapters, or a gs:// path or <org>/<repo>")

    image = commands.add_parser("predict-image", help="image + text prompt through the predict route")
    image.add_argument("--prompt", default="This is a picture of")
    image.add_argument("--image-url", default=TUTORIAL_IMAGE_URL)
    image.add_argument("--max-tokens", type=int, default=64)
    image.add_argument("--temperature", type=float, default=0.5)
    image.add_argument("--top-p", type=float, default=0.95)

    conversation = commands.add_parser("chat", help="OpenAI chat completions on the endpoint")
    conversation.add_argument("--message", default="What is a car?")
    conversation.add_argument("--image-url", help="add an image part to the message")
    conversation.add_argument("--max-tokens", type=int, default=50)
    conversation.add_argument("--temperature", type=float, default=1.0)
    conversation.add_argument("--lora", "--lora-id", dest="lora", metavar="NAME|PATH",
                              help="adapter name from the deployment's lora_adapters, or a gs:// path or <org>/<repo>")
    return top


def run(argv: Sequence[str], stdin=None, stdout=None) -> int:
    stdout = stdout or sys.stdout
    options = parser().parse_args(list(argv))
    deployment = load_deployment(options.outputs, options.deployment, stdin=stdin)
    # Resolved before any credentials are read: a wrong adapter name is a usage error.
    lora = getattr(options, "lora", None)
    lora_id = deployment.adapter_path(lora) if lora else None
    credentials = credentials_for(options.token)
    if options.command == "chat":
        response = chat(deployment, credentials, options.message, options.image_url, options.max_tokens,
                        options.temperature, options.timeout, lora_id)
        if options.json:
            print(response.model_dump_json(indent=2), file=stdout)
        else:
            for choice in response.choices:
                print(choice.message.content, file=stdout)
        return 0
    if options.command == "predict":
        instance = text_instance(options.prompt, options.max_tokens, options.temperature, options.top_p,
                                 options.top_k, options.raw_response, lora_id)
        what = "predict request"
    else:
        instance = image_instance(options.prompt, options.image_url, options.max_tokens,
                                  options.temperature, options.top_p)
        what = "image predict request"
    answer = predict(deployment, credentials, [instance], options.timeout, what)
    if options.json:
        print(json.dumps(answer, indent=2), file=stdout)
    else:
        for prediction in answer.get("predictions", []):
            print(prediction if isinstance(prediction, str) else json.dumps(prediction), file=stdout)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit 0 answered; 1 the request failed; 2 a usage problem; 3 internal error (--debug)."""
    from offline.cli import guarded

    return guarded(_main, argv, prog="tools.vertex_client")


def _main(argv: Sequence[str]) -> int:
    try:
        return run(argv)
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.status


if __name__ == "__main__":
    sys.exit(main())
