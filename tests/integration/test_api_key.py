"""The GKE API key against the real server: prod's llama-70b render started with VLLM_API_KEY,
the variable the rendered Deployment fills from its Kubernetes Secret.

Proves what the NetworkPolicy and the probes rely on: without the key, ``/v1`` answers 401; with
it, 200; ``/health`` (probes) and ``/metrics`` (Managed Prometheus) answer without it; and the key
is not on the command line.
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request

import openai
import pytest

from offline.plan import ROOT, read_stack_file
from stacks.config import load
from stacks.resolve import resolve_stack
from tools.localvllm import LocalServer, free_port, replace_env_for_cpu, replace_for_cpu

pytestmark = pytest.mark.integration


def _status(url: str, key: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_vllm_api_key_guards_v1_and_leaves_health_and_metrics_open(vllm_python, tiny_model, tmp_path):
    values, secret_keys = read_stack_file(ROOT / "Pulumi.prod.yaml")
    d = resolve_stack(load(values, secret_keys, source="Pulumi.prod.yaml", stack="prod")).deployments["llama-70b"]
    assert not [a for a in d.container.args if a.startswith("--api-key")], d.container.args
    port = free_port()
    argv, _ = replace_for_cpu(d.container.argv, model_path=str(tiny_model), port=port, python=vllm_python)
    env, _ = replace_env_for_cpu(d.container.env)
    key = secrets.token_urlsafe(32)
    env["VLLM_API_KEY"] = key
    with LocalServer(argv, env, port, start_timeout=300, log_path=tmp_path / "vllm.log") as server:
        base = server.base_url
        assert key not in " ".join(server.argv), "the key reached the command line"
        assert _status(f"{base}/v1/models") == 401
        assert _status(f"{base}/v1/models", "wrong-key") == 401
        assert _status(f"{base}/v1/models", key) == 200
        assert _status(f"{base}/health") == 200
        assert _status(f"{base}/metrics") == 200
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, timeout=60, max_retries=0)
        assert [m.id for m in client.models.list().data] == [d.container.served_model_name]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{base}/v1", api_key="wrong-key", max_retries=0).models.list()
