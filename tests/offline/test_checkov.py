"""checkov (the real scanner, locked in requirements-checkov.txt) on the Kubernetes manifests of
every committed stack that deploys to GKE: zero failing checks beyond checkov-allowlist.yaml,
every allow-list entry still needed, and a weakened manifest caught."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from offline.plan import ROOT, plan, read_stack_file

ALLOWLIST = ROOT / "checkov-allowlist.yaml"
GKE_STACKS = tuple(sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml")
                          if "llm-serving:gke" in (yaml.safe_load(p.read_text()) or {}).get("config", {})))
WEAKENED = "weakened"


def _checkov() -> str:
    path = os.environ.get("CHECKOV") or str(ROOT / ".venv-checkov" / "bin" / "checkov")
    if not Path(path).exists():
        pytest.fail(f"checkov not found at {path}; `make test` installs it into .venv-checkov")
    return path


def _allowlist() -> list[dict]:
    return yaml.safe_load(ALLOWLIST.read_text(encoding="utf-8"))


def _allowed(check: str, resource: str) -> bool:
    return any(e["check"] == check and fnmatch.fnmatchcase(resource, e["resource"]) for e in _allowlist())


@pytest.fixture(scope="module")
def failures(tmp_path_factory) -> dict[str, list[tuple[str, str]]]:
    """(check id, resource) failing per directory: each GKE stack, plus a weakened vLLM Deployment."""
    root = tmp_path_factory.mktemp("manifests")
    for stack in GKE_STACKS:
        values, secret_keys = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
        result = plan(values, secret_keys, stack=stack, source=f"Pulumi.{stack}.yaml", out_dir=root / stack)
        assert result.manifests, f"Pulumi.{stack}.yaml: no Kubernetes manifests rendered"
    # The scanner must be able to fail: the same Deployment without its hardening.
    source = next((root / GKE_STACKS[0]).glob("deployment-llm-serving-vllm-*.yaml"))
    weakened = yaml.safe_load(source.read_text())
    pod = weakened["spec"]["template"]["spec"]
    pod.pop("securityContext")
    pod.pop("automountServiceAccountToken")
    for container in pod["containers"]:
        container.pop("securityContext")
    (root / WEAKENED).mkdir()
    (root / WEAKENED / source.name).write_text(yaml.safe_dump(weakened))

    run = subprocess.run([_checkov(), "-d", str(root), "--framework", "kubernetes", "--quiet", "--compact",
                          "-o", "json", "--skip-download"], capture_output=True, text=True, timeout=300)
    assert run.stdout.strip(), f"checkov printed nothing (exit {run.returncode}): {run.stderr[-2000:]}"
    reports = json.loads(run.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    found: dict[str, list[tuple[str, str]]] = {name: [] for name in (*GKE_STACKS, WEAKENED)}
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        for check in report["results"]["failed_checks"]:
            directory = Path(check["file_path"]).parts[-2]
            found[directory].append((check["check_id"], check["resource"]))
    return found


def test_there_are_gke_stacks_to_scan():
    assert GKE_STACKS == ("dev", "prod", "staging"), GKE_STACKS


def test_committed_gke_stacks_fail_no_check_beyond_the_allowlist(failures):
    for stack in GKE_STACKS:
        unexpected = sorted({f for f in failures[stack] if not _allowed(*f)})
        assert not unexpected, (f"Pulumi.{stack}.yaml: checkov fails {len(unexpected)} check(s) not in "
                                f"checkov-allowlist.yaml: {unexpected}")


def test_every_allowlist_entry_is_needed_and_explained(failures):
    entries = _allowlist()
    assert len(entries) <= 12, f"checkov-allowlist.yaml has {len(entries)} entries; fix checks instead of allowing them"
    seen = [f for stack in GKE_STACKS for f in failures[stack]]
    for entry in entries:
        assert len(entry.get("reason", "")) >= 40, f"checkov-allowlist.yaml: {entry['check']} needs a reason"
        used = [r for c, r in seen if c == entry["check"] and fnmatch.fnmatchcase(r, entry["resource"])]
        assert used, f"checkov-allowlist.yaml: {entry['check']} on {entry['resource']} no longer fails; remove it"


def test_a_weakened_deployment_is_caught(failures):
    caught = {check for check, _ in failures[WEAKENED] if not _allowed(check, "Deployment.llm-serving.vllm-x")}
    # privilege escalation, capabilities (NET_RAW), seccomp, token mount
    assert {"CKV_K8S_20", "CKV_K8S_28", "CKV_K8S_31", "CKV_K8S_38"} <= caught, sorted(caught)
