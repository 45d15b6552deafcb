"""Promotion between stack files (tools.promote) on copies of the committed stack files.

The source and the promoted target are planned with the real program under the mock engine,
so these tests need no cloud account or network.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stacks.config import DeploymentConfig, Settings, load
from stacks.schema import camel
from tools import promote as promotion
from tools.promote import ENVIRONMENT_KEYS, RELEASE_KEYS, PromotionRefused, main, promote

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = "llm-serving:deployments"
NEW_VERTEX_IMAGE = ("us-docker.pkg.dev/vertex-ai/vertex-vision-model-garden-dockers/"
                    "pytorch-vllm-serve:20250620_0916_RC01")
REVISION = "fedcba9876543210fedcba9876543210fedcba98"  # a new release, not the committed pin
COMMITTED_REVISION = "0e9e39f249a16976918f6564b8830bc894c89659"  # llama-8b in the committed stacks


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    for name in ("dev", "staging", "prod"):
        shutil.copy(ROOT / f"Pulumi.{name}.yaml", tmp_path / f"Pulumi.{name}.yaml")
    return tmp_path


# dev is cheap and has no 70B; staging and prod do. dev promotes the deployments it has.
DEV_ONLY = ["gemma-1b", "llama-8b"]
DEV_SCOPE = ("--only", "gemma-1b", "--only", "llama-8b")


def path_of(root: Path, stack: str) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def read(root: Path, stack: str) -> dict:
    return yaml.safe_load(path_of(root, stack).read_text(encoding="utf-8"))["config"]


class _Dumper(yaml.SafeDumper):
    """Sequences indented under their key, as `pulumi config set` writes them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


def edit(root: Path, stack: str, change) -> None:
    """Apply `change(config)` to a stack file, keeping its leading comment block (others are dropped)."""
    path = path_of(root, stack)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    header = "".join(lines[:next(i for i, line in enumerate(lines) if line.startswith("config:"))])
    document = yaml.safe_load(text)
    change(document["config"])
    path.write_text(header + yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                                       allow_unicode=True, width=1 << 20), encoding="utf-8")


def new_release(config: dict) -> None:
    """dev pins a new image and revision for llama-8b (right after `model`) and raises gemma's context."""
    llama = config[DEPLOYMENTS]["llama-8b"]
    items = [(k, v) for k, v in llama.items() if k not in ("modelRevision", "image")]
    at = [k for k, _ in items].index("model") + 1
    items[at:at] = [("modelRevision", REVISION), ("image", NEW_VERTEX_IMAGE)]
    config[DEPLOYMENTS]["llama-8b"] = dict(items)
    config[DEPLOYMENTS]["gemma-1b"]["vllm"]["maxModelLen"] = 16384


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------
# The key lists.


def test_key_lists_cover_the_schema():
    """Every deployment key and stack-level key is classified, so a new key cannot slip through."""
    release_top = {key.split(".")[0] for key in RELEASE_KEYS}
    environment_deployment = {key.removeprefix("deployments.*.") for key in ENVIRONMENT_KEYS
                              if key.startswith("deployments.*.")}
    for field in dataclasses.fields(DeploymentConfig):
        key = camel(field.name)
        assert key in release_top or key in environment_deployment, f"deployment key {key} is in neither list"
    assert not (release_top - {"cloudrun"}) & environment_deployment
    for field in dataclasses.fields(Settings):
        key = f"llm-serving:{camel(field.name)}"
        assert key == DEPLOYMENTS or key in ENVIRONMENT_KEYS, f"{key} is in neither list"
    for key in ("gcp:project", "gcp:region", "llm-serving:hfToken"):
        assert key in ENVIRONMENT_KEYS


# ---------------------------------------------------------------------------
# Copy and keep.


def test_release_keys_are_copied_from_dev_to_staging(stacks: Path, capsys):
    edit(stacks, "dev", new_release)

    code, out, err = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--root", str(stacks))

    assert code == 0, err
    staging = read(stacks, "staging")
    llama = staging[DEPLOYMENTS]["llama-8b"]
    assert llama["image"] == NEW_VERTEX_IMAGE
    assert llama["modelRevision"] == REVISION
    assert staging[DEPLOYMENTS]["gemma-1b"]["vllm"] == {"maxModelLen": 16384}
    assert f"+      image: {NEW_VERTEX_IMAGE}" in out
    assert "-        maxModelLen: 8192" in out and "+        maxModelLen: 16384" in out
    assert "wrote" in out


def test_environment_keys_stay_with_the_target(stacks: Path, capsys):
    def staging_sizes(config: dict) -> None:
        config[DEPLOYMENTS]["llama-8b"]["hardware"] = {
            "machineType": "g2-standard-24", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 2}

    def dev_changes(config: dict) -> None:
        new_release(config)
        gemma = config[DEPLOYMENTS]["gemma-1b"]
        gemma["cloudrun"]["weights"] = "hub"
        gemma["labels"] = {"owner": "someone-in-dev"}
        config[DEPLOYMENTS]["llama-8b"]["vertex"]["spot"] = True

    edit(stacks, "staging", staging_sizes)
    edit(stacks, "dev", dev_changes)
    before = read(stacks, "staging")

    code, _, err = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--root", str(stacks))

    assert code == 0, err
    after = read(stacks, "staging")
    for key in ("gcp:project", "gcp:region", "llm-serving:environment", "llm-serving:labels",
                "llm-serving:hfTokenSecret"):
        assert after[key] == before[key]
    assert after["gcp:project"] == "acme-llm-staging"
    assert after["llm-serving:environment"] == "staging"
    assert "llm-serving:bucket" not in after  # dev's forceDestroy bucket does not travel
    gemma, llama = after[DEPLOYMENTS]["gemma-1b"], after[DEPLOYMENTS]["llama-8b"]
    assert gemma["scaling"] == {"minReplicas": 0, "maxReplicas": 2}
    assert llama["scaling"] == {"minReplicas": 1, "maxReplicas": 2}
    assert llama["hardware"] == {"machineType": "g2-standard-24", "acceleratorType": "NVIDIA_L4",
                                 "acceleratorCount": 2}
    assert llama["vertex"] == {"dedicatedEndpoint": True}  # dev's spot setting stays in dev
    assert gemma["cloudrun"] == {"weights": "hub", "gpuZonalRedundancy": False,
                                 "invokers": ["group:ml-platform-staging@acme.example"]}
    assert "labels" not in gemma


def test_header_comment_and_key_order_are_kept(stacks: Path):
    edit(stacks, "dev", new_release)
    original = path_of(stacks, "staging").read_text(encoding="utf-8")

    result = promote(path_of(stacks, "dev"), path_of(stacks, "staging"), only=DEV_ONLY)

    assert result.new_text.startswith(original.splitlines(keepends=True)[0])
    assert result.new_text.splitlines()[1].startswith("# staging:")  # after the schema line
    old_keys = list(yaml.safe_load(original)["config"])
    assert list(yaml.safe_load(result.new_text)["config"]) == old_keys
    llama_keys = list(yaml.safe_load(result.new_text)["config"][DEPLOYMENTS]["llama-8b"])
    assert llama_keys == ["platform", "model", "modelRevision", "image", "vllm", "scaling", "vertex"]
    assert result.changed_keys == [
        f"{DEPLOYMENTS}.gemma-1b.vllm.maxModelLen",
        f"{DEPLOYMENTS}.llama-8b.modelRevision",
        f"{DEPLOYMENTS}.llama-8b.image",
    ]
    # Only the promoted lines change: the rest of the file is byte-for-byte the same.
    changed = [line for line in result.diff.splitlines()[2:] if line[:1] in "+-"]
    assert changed == [
        "-        maxModelLen: 8192",
        "+        maxModelLen: 16384",
        f"-      modelRevision: {COMMITTED_REVISION}",
        f"+      modelRevision: {REVISION}",
        f"+      image: {NEW_VERTEX_IMAGE}",
    ]
    assert path_of(stacks, "staging").read_text(encoding="utf-8") == original  # the API writes nothing


def test_release_key_unset_in_source_is_unset_in_target(stacks: Path):
    def pinned(config: dict) -> None:
        config[DEPLOYMENTS]["llama-8b"]["image"] = NEW_VERTEX_IMAGE

    edit(stacks, "staging", pinned)  # dev went back to the catalog's default image

    result = promote(path_of(stacks, "dev"), path_of(stacks, "staging"), only=DEV_ONLY)

    assert "image" not in yaml.safe_load(result.new_text)["config"][DEPLOYMENTS]["llama-8b"]
    assert f"{DEPLOYMENTS}.llama-8b.image" in result.changed_keys


def test_secure_values_in_the_target_are_untouched(stacks: Path, capsys):
    secure = {"secure": "v1:c2VjcmV0LWNpcGhlcnRleHQ=:AAAABBBBCCCC"}

    def with_token(config: dict) -> None:
        config["llm-serving:hfToken"] = secure

    edit(stacks, "staging", with_token)
    edit(stacks, "dev", new_release)

    code, _, err = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--root", str(stacks))

    assert code == 0, err
    assert read(stacks, "staging")["llm-serving:hfToken"] == secure
    assert "secure: v1:c2VjcmV0LWNpcGhlcnRleHQ=:AAAABBBBCCCC" in path_of(stacks, "staging").read_text()


def test_new_deployment_is_added_with_a_review_note(stacks: Path, capsys):
    def add(config: dict) -> None:
        gemma = dict(config[DEPLOYMENTS]["gemma-1b"])
        config[DEPLOYMENTS]["gemma-1b-b"] = gemma

    edit(stacks, "dev", add)

    code, out, err = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--only", "gemma-1b-b", "--root", str(stacks))

    assert code == 0, err
    added = read(stacks, "staging")[DEPLOYMENTS]["gemma-1b-b"]
    assert added["cloudrun"]["invokers"] == ["group:ml-platform-dev@acme.example"]  # a starting point
    assert "added deployment gemma-1b-b" in out
    assert "review: deployment gemma-1b-b is new" in out and "copied from dev" in out


def test_an_adopted_endpoint_is_never_copied_to_another_environment(stacks: Path, capsys):
    def add(config: dict) -> None:
        llama = dict(config[DEPLOYMENTS]["llama-8b"])
        llama["vertex"] = {**llama["vertex"], "existingEndpoint": "1234567890123456789"}
        config[DEPLOYMENTS]["llama-8b-byhand"] = llama

    edit(stacks, "dev", add)

    code, out, err = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--only", "llama-8b-byhand", "--root", str(stacks))

    assert code == 0, err
    added = read(stacks, "staging")[DEPLOYMENTS]["llama-8b-byhand"]
    assert added["vertex"] == {"dedicatedEndpoint": True}, f"staging llama-8b-byhand: vertex is {added['vertex']}"
    assert "vertex.existingEndpoint is an endpoint of dev, not copied" in out, out


def test_platform_change_takes_the_new_platform_section_from_the_source(stacks: Path):
    def to_cloudrun(config: dict) -> None:
        config[DEPLOYMENTS]["llama-8b"] = {
            "platform": "cloudrun", "model": "meta-llama/Llama-3.1-8B-Instruct", "vllm": {"maxModelLen": 4096},
            "scaling": {"minReplicas": 0, "maxReplicas": 1},
            "cloudrun": {"weights": "hub", "gpuZonalRedundancy": False,
                         "invokers": ["group:ml-platform-dev@acme.example"]},
        }

    edit(stacks, "dev", to_cloudrun)

    result = promote(path_of(stacks, "dev"), path_of(stacks, "staging"), only=DEV_ONLY)

    llama = yaml.safe_load(result.new_text)["config"][DEPLOYMENTS]["llama-8b"]
    assert llama["platform"] == "cloudrun"
    assert "vertex" not in llama
    assert llama["cloudrun"]["weights"] == "hub"
    assert llama["scaling"] == {"minReplicas": 1, "maxReplicas": 2}  # staging's replicas
    assert any(note.startswith("review: deployment llama-8b moves from platform vertex to cloudrun")
               for note in result.notes)


# ---------------------------------------------------------------------------
# Refusals.


@pytest.mark.parametrize("vllm, expected", [
    ({"maxModelLen": 65536}, "exceeds google/gemma-3-1b-it's context"),
    ({"maxModelLen": 8192, "swapSpace": 4}, "--swap-space is removed in vLLM 0.18.0"),
])
def test_source_failing_its_checks_is_refused(stacks: Path, capsys, vllm: dict, expected: str):
    def broken(config: dict) -> None:
        new_release(config)
        config[DEPLOYMENTS]["gemma-1b"]["vllm"] = vllm

    edit(stacks, "dev", broken)
    original = path_of(stacks, "staging").read_bytes()

    with pytest.raises(PromotionRefused) as refused:
        promote(path_of(stacks, "dev"), path_of(stacks, "staging"), only=DEV_ONLY)
    reasons = refused.value.reasons
    assert reasons[0] == "Pulumi.dev.yaml does not pass its checks; fix it before promoting it"
    assert any(reason.startswith("source Pulumi.dev.yaml: ERROR deployment gemma-1b:") and expected in reason
               for reason in reasons)

    code, out, err = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--root", str(stacks))
    assert code == 1
    assert "refused: promoting dev to staging" in err and expected in err
    assert out == ""
    assert path_of(stacks, "staging").read_bytes() == original


def test_source_with_an_invalid_config_is_refused(stacks: Path, capsys):
    def typo(config: dict) -> None:
        config[DEPLOYMENTS]["gemma-1b"]["vllm"] = {"maxModelLenn": 8192}

    edit(stacks, "dev", typo)
    original = path_of(stacks, "staging").read_bytes()

    code, _, err = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--root", str(stacks))

    assert code == 1
    assert "Pulumi.dev.yaml does not pass its checks" in err
    assert "source Pulumi.dev.yaml: llm-serving:deployments.gemma-1b.vllm.maxModelLenn" in err
    assert path_of(stacks, "staging").read_bytes() == original


def test_promoted_target_failing_its_checks_is_refused(stacks: Path, capsys):
    # prod serves llama-8b with a long context on an 80 GB A100; staging's single L4 cannot hold it.
    def long_context(config: dict) -> None:
        llama = config[DEPLOYMENTS]["llama-8b"]
        llama["hardware"] = {"machineType": "a2-ultragpu-1g"}
        llama["vllm"]["maxModelLen"] = 65536

    edit(stacks, "prod", long_context)
    original = path_of(stacks, "staging").read_bytes()

    code, out, err = run_cli(capsys, "prod", "staging", "--root", str(stacks))

    assert code == 1, out
    assert "promoted Pulumi.staging.yaml would not pass its checks" in err
    assert "llama-8b" in err and "KV cache" in err, err
    assert path_of(stacks, "staging").read_bytes() == original


def test_removal_is_refused_without_allow_removal(stacks: Path, capsys):
    def extra(config: dict) -> None:
        config[DEPLOYMENTS]["llama-8b-canary"] = dict(config[DEPLOYMENTS]["llama-8b"])

    def without_gke(config: dict) -> None:
        # dev's GKE deployment runs on a node pool staging does not have; this test is about removal.
        config[DEPLOYMENTS].pop("gemma-1b-gke")

    edit(stacks, "staging", extra)
    edit(stacks, "dev", without_gke)
    original = path_of(stacks, "staging").read_bytes()

    code, _, err = run_cli(capsys, "dev", "staging", "--root", str(stacks))
    assert code == 1
    assert "deployment llama-8b-canary is in the target but not in dev" in err
    assert "--allow-removal" in err
    assert path_of(stacks, "staging").read_bytes() == original

    code, out, err = run_cli(capsys, "dev", "staging", "--allow-removal", "--root", str(stacks))
    assert code == 0, err
    assert "removed deployment llama-8b-canary" in out
    assert sorted(read(stacks, "staging")[DEPLOYMENTS]) == ["gemma-1b", "llama-8b"]


# ---------------------------------------------------------------------------
# Round trips.


def test_promoting_twice_is_idempotent(stacks: Path, capsys):
    edit(stacks, "dev", new_release)

    assert run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--root", str(stacks))[0] == 0
    once = path_of(stacks, "staging").read_text(encoding="utf-8")
    assert promote(path_of(stacks, "dev"), path_of(stacks, "staging"), only=DEV_ONLY).diff == ""
    code, out, _ = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--root", str(stacks))

    assert code == 0
    assert "nothing to change" in out
    assert path_of(stacks, "staging").read_text(encoding="utf-8") == once


def test_unchanged_committed_files_promote_to_an_empty_diff(stacks: Path):
    assert promote(path_of(stacks, "dev"), path_of(stacks, "staging"), only=DEV_ONLY).diff == ""


def test_dev_to_staging_to_prod_keeps_prod_protections_and_cluster(stacks: Path, capsys):
    edit(stacks, "dev", new_release)
    prod_before = read(stacks, "prod")
    assert run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--root", str(stacks))[0] == 0

    code, out, err = run_cli(capsys, "staging", "prod", "--root", str(stacks))
    assert code == 0, err
    prod = read(stacks, "prod")
    assert prod[DEPLOYMENTS]["llama-70b"] == prod_before[DEPLOYMENTS]["llama-70b"], "llama-70b: same release, unchanged"
    assert prod[DEPLOYMENTS]["llama-8b"]["image"] == NEW_VERTEX_IMAGE
    assert prod[DEPLOYMENTS]["gemma-1b"]["vllm"]["maxModelLen"] == 16384
    assert prod["llm-serving:gke"] == prod_before["llm-serving:gke"]
    for key in ("gcp:project", "gcp:region", "llm-serving:environment", "llm-serving:labels"):
        assert prod[key] == prod_before[key]
    gemma = prod[DEPLOYMENTS]["gemma-1b"]
    assert gemma["cloudrun"]["gpuZonalRedundancy"] is True
    assert gemma["cloudrun"]["invokers"] == ["group:ml-platform-prod@acme.example"]
    assert gemma["scaling"] == {"minReplicas": 1, "maxReplicas": 4}
    config = load(prod, set(), source="Pulumi.prod.yaml", stack="prod")
    assert config.protections.protect_stateful and config.protections.deletion_protection


# ---------------------------------------------------------------------------
# CLI.


def test_dry_run_writes_nothing(stacks: Path, capsys):
    edit(stacks, "dev", new_release)
    original = path_of(stacks, "staging").read_bytes()

    code, out, _ = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--dry-run", "--root", str(stacks))

    assert code == 0
    assert out.startswith("--- a/Pulumi.staging.yaml\n+++ b/Pulumi.staging.yaml\n")
    assert "dry run: Pulumi.staging.yaml not written" in out
    assert path_of(stacks, "staging").read_bytes() == original


def test_comments_key_order_and_quoting_are_kept(stacks: Path):
    # dev carries a comment inside `config:`; promoting into dev keeps it, and every other line.
    def changed(config: dict) -> None:
        config[DEPLOYMENTS]["llama-8b"]["modelRevision"] = REVISION

    edit(stacks, "staging", changed)
    dev = path_of(stacks, "dev")
    original = dev.read_text(encoding="utf-8")
    assert "The Hugging Face token lives in Secret Manager" in original
    # A comment inside the deployments map and a quoted value, both outside what is promoted.
    original = original.replace("    llama-8b:\n", "    llama-8b:  # the Vertex AI one\n", 1)
    original = original.replace("gcp:region: us-central1", 'gcp:region: "us-central1"', 1)
    dev.write_text(original, encoding="utf-8")

    result = promote(path_of(stacks, "staging"), dev, only=DEV_ONLY)

    assert "The Hugging Face token lives in Secret Manager" in result.new_text
    assert "llama-8b:  # the Vertex AI one" in result.new_text
    assert 'gcp:region: "us-central1"' in result.new_text
    changed_lines = [line for line in result.diff.splitlines()[2:] if line[:1] in "+-"]
    # The committed stacks pin their weights, so the new revision replaces dev's pin, line for line.
    pinned = yaml.safe_load(original)["config"][DEPLOYMENTS]["llama-8b"]["modelRevision"]
    assert changed_lines == [f"-      modelRevision: {pinned}", f"+      modelRevision: {REVISION}"], changed_lines
    assert not any("comment" in note for note in result.notes), result.notes


def test_crlf_line_endings_are_kept(stacks: Path):
    edit(stacks, "dev", new_release)
    staging = path_of(stacks, "staging")
    crlf = staging.read_bytes().replace(b"\n", b"\r\n")
    staging.write_bytes(crlf)

    result = promote(path_of(stacks, "dev"), staging, only=DEV_ONLY)

    assert result.diff, "nothing promoted; the test cannot tell"
    body = result.new_text.encode("utf-8")
    assert body.count(b"\r\n") == body.count(b"\n"), "a line lost its CRLF ending"


@pytest.mark.parametrize("which", ["source", "target"])
def test_duplicate_keys_refuse_the_promotion_naming_both_lines(stacks: Path, capsys, which: str):
    edit(stacks, "dev", new_release)
    stack = "dev" if which == "source" else "staging"
    path = path_of(stacks, stack)
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "  llm-serving:checkQuota: true\n  llm-serving:checkQuota: false\n", encoding="utf-8")
    lines = len(text.splitlines())
    staging_before = path_of(stacks, "staging").read_bytes()

    code, _, err = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--root", str(stacks))

    assert code == 2, f"exit {code}\n{err}"
    assert f"Pulumi.{stack}.yaml: " in err and f"line {lines + 2}: duplicate key 'llm-serving:checkQuota' " \
        f"(first at line {lines + 1})" in err, err
    assert path_of(stacks, "staging").read_bytes() == staging_before


def test_cli_same_stack_is_a_usage_error(stacks: Path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["dev", "dev", "--root", str(stacks)])
    assert exit_.value.code == 2
    assert "two different stacks" in capsys.readouterr().err


def test_cli_missing_stack_file(stacks: Path, capsys):
    code, _, err = run_cli(capsys, "dev", "qa", "--root", str(stacks))
    assert code == 2
    assert "Pulumi.qa.yaml: no such stack file; stacks here: dev, prod, staging" in err


def test_only_promotes_the_named_deployments_and_leaves_the_others(stacks: Path, capsys):
    edit(stacks, "dev", new_release)
    before_70b = read(stacks, "staging")[DEPLOYMENTS]["llama-70b"]
    code, _, err = run_cli(capsys, "dev", "staging", "--only", "llama-8b", "--root", str(stacks))
    assert code == 0, err
    staging = read(stacks, "staging")[DEPLOYMENTS]
    assert staging["llama-8b"]["image"] == NEW_VERTEX_IMAGE, f"llama-8b: image {staging['llama-8b'].get('image')}"
    assert staging["gemma-1b"]["vllm"]["maxModelLen"] == 8192, "gemma-1b was not named in --only but changed"
    assert staging["llama-70b"] == before_70b, "llama-70b is not in dev and must stay as it was"


def test_without_only_a_cheap_source_would_delete_the_targets_extra_deployment(stacks: Path, capsys):
    before = path_of(stacks, "staging").read_bytes()
    code, _, err = run_cli(capsys, "dev", "staging", "--root", str(stacks))
    assert code == 1 and "deployment llama-70b is in the target but not in dev" in err, err
    assert path_of(stacks, "staging").read_bytes() == before, "Pulumi.staging.yaml changed although refused"


def test_only_naming_an_unknown_deployment_is_refused(stacks: Path, capsys):
    code, _, err = run_cli(capsys, "dev", "staging", "--only", "llama-9b", "--root", str(stacks))
    assert code == 1 and "--only llama-9b: dev has no deployment llama-9b" in err, err


# ---------------------------------------------------------------------------
# Writing cannot lose the file.


def _promoted_to_staging(stacks: Path) -> Path:
    edit(stacks, "dev", new_release)
    return path_of(stacks, "staging")


def test_write_keeps_permissions_and_leaves_no_temporary_file(stacks: Path, capsys):
    staging = _promoted_to_staging(stacks)
    staging.chmod(0o640)
    code, _, err = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--root", str(stacks))
    assert code == 0, err
    assert oct(staging.stat().st_mode & 0o777) == oct(0o640)
    assert "maxModelLen: 16384" in staging.read_text(encoding="utf-8")
    assert sorted(p.name for p in stacks.iterdir()) == ["Pulumi.dev.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml"]


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_a_failed_write_leaves_the_old_file_intact(stacks: Path, capsys, monkeypatch, failing: str):
    staging = _promoted_to_staging(stacks)
    before = staging.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if failing == "write":
        real_fdopen = os.fdopen

        class HalfWritten:
            """Writes half of what it is given, then the disk is full."""

            def __init__(self, handle):
                self.handle = handle

            def write(self, data):
                self.handle.write(data[: len(data) // 2])
                self.handle.flush()
                full_disk()

            def __getattr__(self, name):
                return getattr(self.handle, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

        monkeypatch.setattr(promotion.os, "fdopen", lambda *a, **k: HalfWritten(real_fdopen(*a, **k)))
    else:
        monkeypatch.setattr(promotion.os, failing, full_disk)

    code, _, err = run_cli(capsys, "dev", "staging", *DEV_SCOPE, "--root", str(stacks))

    assert code == 1, f"exit {code}\n{err}"
    assert "could not write" in err and "No space left on device" in err and "it is unchanged" in err, err
    assert staging.read_bytes() == before, f"{failing} failing changed Pulumi.staging.yaml"
    leftovers = [p.name for p in stacks.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_a_process_killed_while_writing_leaves_the_old_file_intact(stacks: Path):
    """A real kill (SIGKILL) halfway through writing the temporary file: nothing cleans up, and
    the stack file must still be the old one, whole."""
    staging = _promoted_to_staging(stacks)
    before = staging.read_bytes()
    script = f"""
import os, signal
from pathlib import Path
from tools import promote

real_fdopen = os.fdopen

class KilledHalfway:
    def __init__(self, handle):
        self.handle = handle
    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return False

os.fdopen = lambda *a, **k: KilledHalfway(real_fdopen(*a, **k))
promote.write_atomically(Path({str(staging)!r}), "config:\\n  cut: " + "x" * 100000 + "\\n")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)
    partial = [p for p in stacks.iterdir() if p.name.endswith(".tmp")]
    assert partial and 0 < partial[0].stat().st_size < 100000, "the kill did not happen mid-write; the test cannot tell"
    assert staging.read_bytes() == before, "Pulumi.staging.yaml changed although the write was killed"
