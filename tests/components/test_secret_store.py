"""components/secret_store.py: the one place a Secret Manager secret holding a Pulumi secret is
created or read. Both users (the Hugging Face token, the serving API key) go through it, register
the same secret shape, and keep the names (and so the URNs) they had."""

from __future__ import annotations

import ast
from pathlib import Path

import pulumi
import pytest

from components.api_key import ServingApiKey, ServingApiKeyArgs
from components.hf_token import HuggingFaceToken, HuggingFaceTokenArgs
from components.secret_store import secret_resource_name, store_secret
from offline.mocks import CloudMocks, RecordingMonitor, is_wrapped_secret, unwrap_secrets
from offline.runner import run_under_mocks

COMPONENTS = Path(__file__).resolve().parents[2] / "components"
HOME = "secret_store.py"
# Calls that create or read a Secret Manager secret's value; each belongs in secret_store.py only.
SECRET_CALLS = {"Secret", "SecretVersion", "get_secret_version_access", "get_secret_version_access_output"}
PROJECT, REGION = "mock-project", "europe-west4"
LABELS = {"app": "llm-serving", "environment": "test"}
TOKEN = "hf_storeCanary_41c9e0"


def _secret_calls(path: Path) -> list[str]:
    """`secretmanager.<call>(` occurrences in one module, as `line: call`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SECRET_CALLS:
            owner = node.func.value
            if isinstance(owner, ast.Attribute) and owner.attr == "secretmanager":
                found.append(f"{node.lineno}: secretmanager.{node.func.attr}")
    return found


def test_only_the_secret_store_creates_or_reads_secret_manager_secrets():
    elsewhere = {p.name: calls for p in sorted(COMPONENTS.glob("*.py")) if p.name != HOME
                 if (calls := _secret_calls(p))}
    assert not elsewhere, (f"Secret Manager secrets created or read outside components/{HOME} "
                           f"(use store_secret / existing_secret_value): {elsewhere}")
    assert _secret_calls(COMPONENTS / HOME), f"components/{HOME} no longer creates secrets; update this test"


@pytest.mark.parametrize("protect", [False, True])
def test_token_and_api_key_register_the_same_secret_shape(monkeypatch, protect: bool):
    protect_flags: dict[str, bool] = {}
    original = RecordingMonitor.RegisterResource

    def recording(self, request):
        protect_flags[request.name] = bool(request.protect)
        return original(self, request)

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", recording)

    def program():
        HuggingFaceToken("hf", HuggingFaceTokenArgs(project=PROJECT, region=REGION, labels=LABELS,
                                                    secret_id="llm-test-hf-token", token=TOKEN, protect=protect))
        ServingApiKey("key", ServingApiKeyArgs(project=PROJECT, region=REGION, labels=LABELS,
                                               secret_id="llm-test-key", protect=protect))

    result = run_under_mocks(program, mocks=CloudMocks(project=PROJECT, region=REGION))
    components = {r.name: r for r in result.registrations if r.name in ("hf", "key")}
    shapes = {}
    for owner in ("hf", "key"):
        secret, version = result.named(f"{owner}-secret"), result.named(f"{owner}-version")
        for child in (secret, version):
            assert child.parent == components[owner].urn, f"{child.name}: parent {child.parent}, not its component"
            assert protect_flags[child.name] is protect, f"{child.name}: protect={protect_flags[child.name]}"
        data = version.inputs["secretData"]
        assert is_wrapped_secret(data), f"{version.name}: secretData is registered in plain text"
        shapes[owner] = {k: v for k, v in secret.inputs.items() if k != "secretId"}
    assert unwrap_secrets(result.named("hf-version").inputs["secretData"]) == TOKEN, "hf-version: not the token"
    assert shapes["hf"] == shapes["key"], f"hf-secret and key-secret differ: {shapes}"
    assert shapes["hf"]["replication"] == {"userManaged": {"replicas": [{"location": REGION}]}}, \
        f"hf-secret: replication {shapes['hf']['replication']} leaves the stack's region"
    assert shapes["hf"]["deletionProtection"] is protect, f"hf-secret: deletionProtection {shapes['hf']}"


def test_store_secret_names_children_after_the_caller_and_wraps_a_plain_value():
    class Owner(pulumi.ComponentResource):
        def __init__(self, name: str):
            super().__init__("test:index:Owner", name)
            self.stored = store_secret(name, parent=self, project=PROJECT, region=REGION, secret_id="s-1",
                                       labels={}, value="plain-value", protect=False)
            self.register_outputs({})

    def program():
        owner = Owner("owner")
        pulumi.export("value", owner.stored.value)

    result = run_under_mocks(program, mocks=CloudMocks(project=PROJECT, region=REGION))
    owner = result.named("owner")
    assert {r.name for r in result.children_of(owner)} == {"owner-secret", "owner-version"}, \
        f"owner: children {[r.name for r in result.children_of(owner)]}"
    assert result.outputs["value"].secret, "store_secret returned a plain value for a plain input"


@pytest.mark.parametrize("given, full", [("hf-token", "projects/p1/secrets/hf-token"),
                                         ("projects/other/secrets/k", "projects/other/secrets/k")])
def test_secret_resource_name(given: str, full: str):
    assert secret_resource_name(given, "p1") == full
