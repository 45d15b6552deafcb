"""The GitHub workflows: schema-valid, clean under zizmor, and shaped the way the delivery promises.

The linters are the real ones from the venv; the shape checks parse the YAML.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
BIN = Path(sys.executable).parent
STACKS = ["dev", "staging", "prod"]

SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
TAG_PIN = re.compile(r"^[\w.-]+/[\w./-]+@v\d+\.\d+\.\d+$")
# Action references that could not be verified at a commit; the tag is exact and the
# zizmor finding is ignored inline with the reason. Remove an entry once it is SHA-pinned.
TAG_PINNED_ACTIONS = {"pulumi/actions"}
WRITE_SCOPES_ALLOWED = {"id-token", "pull-requests"}


def load(name: str) -> dict:
    # PyYAML reads the `on:` key as the boolean True.
    data = yaml.safe_load((WORKFLOW_DIR / name).read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def uses(job: dict, action: str) -> list[dict]:
    return [s for s in steps(job) if str(s.get("uses", "")).split("@")[0] == action]


def all_uses() -> list[tuple[str, str, str]]:
    """(workflow, uses, the line's trailing comment) for every `uses:` line."""
    found = []
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)\s*(#.*)?$", line)
            if match:
                found.append((path.name, match.group(1), match.group(2) or ""))
    return found


def test_both_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"pull-request.yml", "deploy.yml"}


# --------------------------------------------------------------------------- real linters

@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_github_workflow_schema(workflow):
    result = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                             str(workflow)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_reports_no_findings():
    # The auditor persona is the strictest; deliberate exceptions carry an inline
    # `# zizmor: ignore[...]` comment with the reason and do not appear here.
    result = subprocess.run([str(BIN / "zizmor"), "--offline", "--persona", "auditor", "--format", "json",
                             str(WORKFLOW_DIR)], capture_output=True, text=True, timeout=300)
    findings = json.loads(result.stdout or "null")
    assert findings is not None, result.stderr

    def where(finding: dict) -> str:
        loc = finding["locations"][0]
        path = loc["symbolic"]["key"]["Local"]["verbatim_path"]
        return f"{Path(path).name}:{loc['concrete']['location']['start_point']['row'] + 1}"

    summary = [f"{where(f)} {f['ident']}: {f['desc']} ({f['url']})" for f in findings]
    assert findings == [], "\n".join(summary)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- pinning

def test_every_action_is_pinned_to_a_commit_or_an_exact_tag():
    assert all_uses(), "no uses: lines found"
    for workflow, ref, comment in all_uses():
        action = ref.split("@")[0]
        if SHA_PIN.match(ref):
            assert re.search(r"#\s*v\d+\.\d+\.\d+\b", comment), f"{workflow}: {ref} needs a '# vX.Y.Z' comment"
        else:
            assert TAG_PIN.match(ref) and action in TAG_PINNED_ACTIONS, \
                f"{workflow}: {ref} must be pinned to a 40-hex commit SHA (or an exact tag listed in TAG_PINNED_ACTIONS)"


def test_one_version_of_each_action_everywhere():
    versions: dict[str, set[str]] = {}
    for _, ref, _ in all_uses():
        action, version = ref.split("@")
        versions.setdefault(action, set()).add(version)
    assert {a: v for a, v in versions.items() if len(v) > 1} == {}


# --------------------------------------------------------------------------- permissions

@pytest.mark.parametrize("workflow", ["pull-request.yml", "deploy.yml"])
def test_top_level_permissions_are_read_only(workflow):
    data = load(workflow)
    assert "permissions" in data, f"{workflow} must declare top-level permissions"
    assert data["permissions"] in ({}, {"contents": "read"}), data["permissions"]


@pytest.mark.parametrize("workflow", ["pull-request.yml", "deploy.yml"])
def test_job_permissions_are_minimal(workflow):
    for name, job in load(workflow)["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{workflow}:{name} must declare its own permissions"
        writes = {scope for scope, level in perms.items() if level == "write"}
        assert writes <= WRITE_SCOPES_ALLOWED, f"{workflow}:{name} writes {writes}"
        assert perms.get("contents") == "read", f"{workflow}:{name}"
        authenticates = bool(uses(job, "google-github-actions/auth"))
        assert (perms.get("id-token") == "write") == authenticates, \
            f"{workflow}:{name}: id-token: write exactly where google-github-actions/auth runs"
        comments = any(str(s.get("with", {}).get("comment-on-pr", "")).lower() == "true" for s in steps(job))
        assert (perms.get("pull-requests") == "write") == comments, \
            f"{workflow}:{name}: pull-requests: write exactly where the PR comment is posted"


@pytest.mark.parametrize("workflow", ["pull-request.yml", "deploy.yml"])
def test_checkout_drops_credentials_and_runs_before_auth(workflow):
    for name, job in load(workflow)["jobs"].items():
        actions = [str(s.get("uses", "")).split("@")[0] for s in steps(job)]
        for step in uses(job, "actions/checkout"):
            assert step.get("with", {}).get("persist-credentials") is False, f"{workflow}:{name}"
        if "google-github-actions/auth" in actions:
            assert actions.index("actions/checkout") < actions.index("google-github-actions/auth")
            (auth,) = uses(job, "google-github-actions/auth")
            assert "credentials_json" not in auth.get("with", {}), "Workload Identity Federation only, no keys"
            assert "vars." in auth["with"]["workload_identity_provider"]
            assert "vars." in auth["with"]["service_account"]


# --------------------------------------------------------------------------- pull requests

def test_pull_request_runs_tests_plans_and_a_commented_preview_per_stack():
    data = load("pull-request.yml")
    assert "pull_request" in data["on"]
    assert data["concurrency"]["cancel-in-progress"] is True
    runs = [s.get("run", "") for job in data["jobs"].values() for s in steps(job)]
    assert "make test" in runs
    for stack in STACKS:
        assert f"make plan STACK={stack}" in runs

    (preview_job,) = [j for j in data["jobs"].values() if uses(j, "pulumi/actions")]
    assert preview_job["strategy"]["matrix"]["stack"] == STACKS
    (preview,) = uses(preview_job, "pulumi/actions")
    inputs = preview["with"]
    assert inputs["command"] == "preview"
    assert inputs["comment-on-pr"] is True
    assert inputs["stack-name"] == "${{ vars.PULUMI_ORG }}/${{ matrix.stack }}"
    assert inputs["policyPacks"] == "policies"
    assert inputs["policyPackConfigs"] == "policies/config/${{ matrix.stack }}.json"


# --------------------------------------------------------------------------- deploys

def _deploy_jobs() -> dict[str, tuple[str, dict]]:
    """stack -> (job id, job), found from each job's `pulumi up` step."""
    by_stack = {}
    for job_id, job in load("deploy.yml")["jobs"].items():
        (up,) = uses(job, "pulumi/actions")
        assert up["with"]["command"] == "up"
        by_stack[up["with"]["stack-name"].rsplit("/", 1)[-1]] = (job_id, job)
    return by_stack


def test_deploy_runs_on_push_to_main_only():
    on = load("deploy.yml")["on"]
    assert set(on) == {"push"} and on["push"]["branches"] == ["main"]


def test_deploy_promotes_dev_then_staging_then_prod_behind_environments():
    deploy = _deploy_jobs()
    assert set(deploy) == set(STACKS)
    ids = {stack: job_id for stack, (job_id, _) in deploy.items()}
    jobs = {stack: job for stack, (_, job) in deploy.items()}
    assert "needs" not in jobs["dev"]
    assert jobs["staging"]["needs"] in (ids["dev"], [ids["dev"]])
    assert jobs["staging"]["environment"] == "staging"
    assert jobs["prod"]["needs"] in (ids["staging"], [ids["staging"]])
    assert jobs["prod"]["environment"] == "production"


def test_deploys_run_the_policy_pack_with_their_environment_config():
    for stack, (_, job) in _deploy_jobs().items():
        (up,) = uses(job, "pulumi/actions")
        assert up["with"]["policyPacks"] == "policies"
        assert up["with"]["policyPackConfigs"] == f"policies/config/{stack}.json"
        assert (ROOT / "policies" / "config" / f"{stack}.json").is_file()


def test_deploys_are_never_cancelled():
    data = load("deploy.yml")
    assert data.get("concurrency", {}).get("cancel-in-progress") is not True
    for stack, (_, job) in _deploy_jobs().items():
        concurrency = job.get("concurrency") or data.get("concurrency")
        assert concurrency, f"deploy of {stack} needs a concurrency group"
        assert concurrency.get("cancel-in-progress") is False, stack


def test_deploys_impersonate_with_a_long_lived_access_token():
    for stack, (_, job) in _deploy_jobs().items():
        (auth,) = uses(job, "google-github-actions/auth")
        assert auth["with"]["token_format"] == "access_token", stack
        lifetime = int(str(auth["with"]["access_token_lifetime"]).rstrip("s"))
        assert lifetime >= 3600, stack
        (up,) = uses(job, "pulumi/actions")
        assert up["env"]["GOOGLE_OAUTH_ACCESS_TOKEN"] == f"${{{{ steps.{auth['id']}.outputs.access_token }}}}"
