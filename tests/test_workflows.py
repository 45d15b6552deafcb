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
WRITE_SCOPES_ALLOWED = {"id-token", "pull-requests", "issues"}
NAMES = [p.name for p in WORKFLOWS]


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
            if match and not match.group(1).startswith(("./", "$/")):  # a workflow of this repository
                found.append((path.name, match.group(1), match.group(2) or ""))
    return found


def test_the_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"pull-request.yml", "deploy.yml", "deploy-stack.yml", "drift.yml"}


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

@pytest.mark.parametrize("workflow", NAMES)
def test_top_level_permissions_are_read_only(workflow):
    data = load(workflow)
    assert "permissions" in data, f"{workflow} must declare top-level permissions"
    assert data["permissions"] in ({}, {"contents": "read"}), data["permissions"]


def called(job: dict) -> dict | None:
    """The jobs of the reusable workflow a caller job runs (`uses: $/.github/workflows/x.yml`)."""
    ref = job.get("uses")
    return load(Path(ref).name)["jobs"] if ref else None


@pytest.mark.parametrize("workflow", NAMES)
def test_job_permissions_are_minimal(workflow):
    for name, job in load(workflow)["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{workflow}:{name} must declare its own permissions"
        writes = {scope for scope, level in perms.items() if level == "write"}
        assert writes <= WRITE_SCOPES_ALLOWED, f"{workflow}:{name} writes {writes}"
        assert perms.get("contents") == "read", f"{workflow}:{name}"
        callee = called(job)
        if callee is not None:
            # A caller grants exactly what the called jobs ask for, nothing more.
            (inner,) = callee.values()
            assert perms == inner["permissions"], f"{workflow}:{name} grants {perms}, {job['uses']} needs {inner['permissions']}"
            continue
        authenticates = bool(uses(job, "google-github-actions/auth"))
        assert (perms.get("id-token") == "write") == authenticates, \
            f"{workflow}:{name}: id-token: write exactly where google-github-actions/auth runs"
        comments = any(str(s.get("with", {}).get("comment-on-pr", "")).lower() == "true" for s in steps(job))
        assert (perms.get("pull-requests") == "write") == comments, \
            f"{workflow}:{name}: pull-requests: write exactly where the PR comment is posted"
        opens_issues = any("gh issue" in str(s.get("run", "")) for s in steps(job))
        assert (perms.get("issues") == "write") == opens_issues, f"{workflow}:{name}: issues: write exactly where issues are opened"


@pytest.mark.parametrize("workflow", NAMES)
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


# --------------------------------------------------------------------------- reviewed plans

def test_pull_request_saves_the_reviewed_plan_of_each_stack_as_an_artifact():
    (preview_job,) = [j for j in load("pull-request.yml")["jobs"].values() if uses(j, "pulumi/actions")]
    (preview,) = uses(preview_job, "pulumi/actions")
    plan_file = preview["with"]["plan"]
    assert plan_file == "update-plan-${{ matrix.stack }}.json"
    (upload,) = uses(preview_job, "actions/upload-artifact")
    assert upload["with"]["path"] == plan_file
    assert upload["with"]["name"] == "update-plan-${{ matrix.stack }}"
    assert upload["with"]["if-no-files-found"] == "error"
    order = [str(s.get("uses", "")).split("@")[0] for s in steps(preview_job)]
    assert order.index("pulumi/actions") < order.index("actions/upload-artifact")


def _deploy_job() -> dict:
    (job,) = load("deploy-stack.yml")["jobs"].values()
    return job


def test_deploy_applies_exactly_the_reviewed_plan():
    job = _deploy_job()
    (download,) = uses(job, "actions/download-artifact")
    assert download["with"]["name"] == "update-plan-${{ inputs.stack }}"
    assert "steps.reviewed.outputs.run-id" in download["with"]["run-id"]
    (up,) = [s for s in uses(job, "pulumi/actions") if s["with"]["command"] == "up"]
    assert up["with"]["plan"] == "update-plan-${{ inputs.stack }}.json"
    names = [s.get("name") for s in steps(job)]
    assert names.index(download["name"]) < names.index(up["name"])
    # No reviewed plan, no deploy: the finder fails rather than falling back to a fresh `up`.
    (finder,) = [s for s in steps(job) if s.get("id") == "reviewed"]
    assert finder["run"].count("exit 1") >= 2


def test_deploy_checks_for_drift_right_after_up():
    job = _deploy_job()
    actions = uses(job, "pulumi/actions")
    commands = [s["with"]["command"] for s in actions]
    assert commands == ["up", "preview"]
    check = actions[1]["with"]
    assert check["expect-no-changes"] is True and check["refresh"] is True


def test_drift_is_checked_on_a_schedule_for_every_stack_and_reported_as_an_issue():
    data = load("drift.yml")
    assert data["on"]["schedule"] and "workflow_dispatch" in data["on"]
    (job,) = data["jobs"].values()
    assert job["strategy"]["matrix"]["stack"] == STACKS
    (preview,) = uses(job, "pulumi/actions")
    assert preview["with"]["command"] == "preview"
    assert preview["with"]["refresh"] is True and preview["with"]["expect-no-changes"] is True
    assert preview.get("continue-on-error") is True
    (report,) = [s for s in steps(job) if "gh issue create" in str(s.get("run", ""))]
    assert report["if"] == f"steps.{preview['id']}.outcome == 'failure'"
    assert "gh issue comment" in report["run"], "an open drift issue is updated, not duplicated"


# --------------------------------------------------------------------------- deploys

def _deploy_jobs() -> dict[str, tuple[str, dict]]:
    """stack -> (job id, caller job) from deploy.yml, each calling deploy-stack.yml."""
    by_stack = {}
    for job_id, job in load("deploy.yml")["jobs"].items():
        assert job["uses"] == "$/.github/workflows/deploy-stack.yml", job_id
        by_stack[job["with"]["stack"]] = (job_id, job)
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
    assert jobs["staging"]["with"]["environment"] == "staging"
    assert jobs["prod"]["needs"] in (ids["staging"], [ids["staging"]])
    assert jobs["prod"]["with"]["environment"] == "production"
    assert _deploy_job()["environment"] == "${{ inputs.environment }}"


def test_deploys_run_the_policy_pack_with_their_environment_config():
    (up,) = [s for s in uses(_deploy_job(), "pulumi/actions") if s["with"]["command"] == "up"]
    assert up["with"]["policyPacks"] == "policies"
    assert up["with"]["policyPackConfigs"] == "policies/config/${{ inputs.stack }}.json"
    for stack in _deploy_jobs():
        assert (ROOT / "policies" / "config" / f"{stack}.json").is_file()


def test_deploys_are_never_cancelled():
    data = load("deploy.yml")
    assert data.get("concurrency", {}).get("cancel-in-progress") is not True
    concurrency = _deploy_job()["concurrency"]
    assert concurrency["group"] == "deploy-${{ inputs.stack }}"
    assert concurrency["cancel-in-progress"] is False


def test_deploys_impersonate_with_a_long_lived_access_token():
    job = _deploy_job()
    (auth,) = uses(job, "google-github-actions/auth")
    assert auth["with"]["token_format"] == "access_token"
    lifetime = int(str(auth["with"]["access_token_lifetime"]).rstrip("s"))
    assert lifetime >= 3600
    for step in uses(job, "pulumi/actions"):
        assert step["env"]["GOOGLE_OAUTH_ACCESS_TOKEN"] == f"${{{{ steps.{auth['id']}.outputs.access_token }}}}"


def test_deploy_secrets_are_passed_by_name_never_inherited():
    for stack, (_, job) in _deploy_jobs().items():
        assert job.get("secrets") != "inherit", stack
        assert set(job["secrets"]) == {"PULUMI_ACCESS_TOKEN"}, stack
