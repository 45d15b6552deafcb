"""The plan's command line: exit statuses a pipeline can trust, and a plan that shows what would
deploy (the Vertex container spec with only the token masked, whole values with --verbose,
resource options, invented values marked, quota not presented as read)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from offline import plan as plan_module
from stacks import compose, program

ROOT = Path(__file__).resolve().parents[2]


def run_plan(capsys, *argv: str) -> tuple[int, str, str]:
    status = plan_module.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def out(tmp_path) -> str:
    return str(tmp_path / "build")


# ---------------------------------------------------------------------------- exit statuses


def test_committed_stacks_plan_with_exit_0(capsys, out):
    for stack in ("dev", "staging", "prod"):
        status, _, err = run_plan(capsys, stack, "--out", out)
        assert status == 0, f"{stack}: exit {status}\n{err}"


def test_failed_check_exits_1(tmp_path, capsys, out):
    text = (ROOT / "Pulumi.dev.yaml").read_text(encoding="utf-8")
    # A max_model_len above Llama 3.1 8B's context: a preview check, not a config problem.
    path = tmp_path / "Pulumi.dev.yaml"
    assert text.count("maxModelLen: 4096") == 1, "Pulumi.dev.yaml changed; pick another value to break"
    path.write_text(text.replace("maxModelLen: 4096", "maxModelLen: 1000000"), encoding="utf-8")
    status, stdout, err = run_plan(capsys, "--file", str(path), "--out", out)
    assert status == 1, f"exit {status}\n{stdout}\n{err}"
    assert "would refuse this deploy" in stdout, stdout


def test_policy_config_named_or_said_absent(tmp_path, capsys, out):
    # A new stack has no policies/config/<stack>.json yet: the plan says the pack's defaults applied.
    path = tmp_path / "Pulumi.qa.yaml"
    path.write_text((ROOT / "Pulumi.dev.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    _, stdout, _ = run_plan(capsys, "--file", str(path), "--out", out)
    assert "Policy pack (policies/config/qa.json absent: the pack's own defaults):" in stdout, stdout[-2000:]
    _, stdout, _ = run_plan(capsys, "dev", "--out", out)
    assert "Policy pack (policies/config/dev.json):" in stdout, stdout[-2000:]


def test_missing_stack_file_exits_2(capsys, out):
    status, _, err = run_plan(capsys, "no-such-stack", "--out", out)
    assert status == 2 and "no such stack file" in err, (status, err)


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        plan_module.main(["dev", "--file", "x"])
    assert info.value.code == 2


def _break_the_program(monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("planted bug")

    monkeypatch.setattr(compose, "build", broken)


def test_internal_error_exits_3_with_one_line_and_no_traceback(monkeypatch, capsys, out):
    _break_the_program(monkeypatch)
    status, _, err = run_plan(capsys, "dev", "--out", out)
    assert status == 3, f"exit {status}\n{err}"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "internal error (a bug): ZeroDivisionError: planted bug" in lines[0], lines[0]
    assert "--debug" in lines[0] and "report" in lines[0], lines[0]


def test_internal_error_with_debug_prints_the_traceback(monkeypatch, capsys, out):
    _break_the_program(monkeypatch)
    status, _, err = run_plan(capsys, "dev", "--out", out, "--debug")
    assert status == 3
    assert "Traceback" in err and "planted bug" in err and "ZeroDivisionError" in err, err


def test_program_turns_a_bug_into_one_clean_run_error(monkeypatch):
    """Under `pulumi preview` a RunError is printed as its message alone: the bug becomes one."""
    import pulumi

    from offline.plan import engine_values, read_stack_file
    from offline.runner import run_under_mocks

    _break_the_program(monkeypatch)
    values, secret_keys = read_stack_file(ROOT / "Pulumi.dev.yaml")
    with pytest.raises(pulumi.RunError) as info:
        run_under_mocks(program.run, stack="dev", config=engine_values(values), secret_keys=sorted(secret_keys))
    message = str(info.value)
    assert message.startswith("internal error (a bug): ZeroDivisionError: planted bug"), message
    assert f"{program.DEBUG_ENV}=1" in message, message
    monkeypatch.setenv(program.DEBUG_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        run_under_mocks(program.run, stack="dev", config=engine_values(values), secret_keys=sorted(secret_keys))


def test_module_entry_point_exit_statuses():
    """As a pipeline runs it: a separate process, exit status and streams only."""
    done = subprocess.run([sys.executable, "-m", "offline.plan", "--file", "/nonexistent/Pulumi.x.yaml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, (done.returncode, done.stderr)


# ---------------------------------------------------------------------------- what the plan shows


def test_vertex_container_spec_is_shown_with_only_the_token_masked(capsys, out):
    status, text, _ = run_plan(capsys, "dev", "--out", out)
    assert status == 0
    vertex = text[text.index("llm-dev-llama-8b-deployment"):]
    for shown in ("modelConfig.huggingFaceAccessToken = [secret]", "modelConfig.containerSpec.imageUri = ",
                  "modelConfig.containerSpec.args = ", "modelConfig.containerSpec.envs[0].name = MODEL_ID",
                  "modelConfig.containerSpec.predictRoute = /generate", "modelConfig.containerSpec.sharedMemorySizeMb = ",
                  "modelConfig.containerSpec.deploymentTimeout = "):
        assert shown in vertex, f"llm-dev-llama-8b-deployment: {shown!r} not in the plan"
    assert "modelConfig = [secret]" not in text, "the whole model config is hidden"
    assert "offline-placeholder-secret" not in text, "the placeholder token is printed"


def test_verbose_prints_whole_values(capsys, out):
    _, short, _ = run_plan(capsys, "prod", "--out", out)
    _, verbose, _ = run_plan(capsys, "prod", "--out", out, "--verbose")
    cut = [line for line in short.splitlines() if line.endswith("...")]
    assert cut, "nothing in the prod plan is long enough to be cut; the test cannot tell"
    assert not [line for line in verbose.splitlines() if line.endswith("...")], "--verbose still cuts values"
    args_lines = [line for line in verbose.splitlines() if ".args = [" in line]
    assert any("--max-model-len" in line and line.rstrip().endswith("]") for line in args_lines), args_lines


def test_resource_options_are_shown_in_text_and_json(capsys, out):
    _, text, _ = run_plan(capsys, "prod", "--out", out)
    lines = text.splitlines()
    bucket = next(i for i, line in enumerate(lines) if line.strip().endswith("llm-prod-models-bucket"))
    assert "(options) protect" in lines[bucket + 1], lines[bucket:bucket + 3]
    deployment = next(i for i, line in enumerate(lines) if line.strip().endswith("llm-prod-llama-8b-deployment"))
    shown = "\n".join(lines[deployment:deployment + 6])
    assert "(on change) replicas and autoscaling" in shown and "update in place" in shown, shown
    assert "(on change) container" in shown and "a new endpoint is created and deployed first" in shown, shown
    _, document, _ = run_plan(capsys, "prod", "--json", "--out", out)
    resources = {r["name"]: r for r in json.loads(document)["resources"]}
    assert resources["llm-prod-models-bucket"]["options"].get("protect") is True
    vertex = resources["llm-prod-llama-8b-deployment"]
    assert "deleteBeforeReplace" not in vertex["options"] and "replaceOnChanges" not in vertex["options"], vertex["options"]
    assert vertex["options"].get("protect") is True, vertex["options"]
    assert [c.split(":")[0] for c in vertex["changes"]] == ["replicas and autoscaling (min/max/required replica count, "
                                                            "autoscaling metric target)",
                                                            "container (image, command, args, env, ports, routes), model "
                                                            "and token, machine, accelerators, spot, endpoint settings"], \
        vertex["changes"]
    aliased = [r for r in resources.values() if r["options"].get("aliases")]
    assert aliased, "no resource shows its aliases"
    assert all(not r["options"].get("protect") for r in json.loads(run_plan(capsys, "dev", "--json", "--out", out)[1])
               ["resources"]), "dev protects a resource"


def test_invented_values_are_marked_in_text_and_json(capsys, out):
    _, text, _ = run_plan(capsys, "dev", "--out", out)
    endpoint_line = next(line for line in text.splitlines() if "deployments.llama-8b.endpoint_id:" in line)
    assert endpoint_line.endswith("(invented offline)"), endpoint_line
    project_line = next(line for line in text.splitlines() if line.startswith("  project: "))
    assert "(invented offline)" not in project_line, "the configured project id is marked invented"
    _, document_text, _ = run_plan(capsys, "dev", "--json", "--out", out)
    document = json.loads(document_text)
    assert "deployments.llama-8b.endpoint_id" in document["invented_outputs"], document["invented_outputs"]
    assert "deployments.gemma-1b.url" in document["invented_outputs"], document["invented_outputs"]
    assert "project" not in document["invented_outputs"]
    assert "invented" in document["note"]
    # (The baked image's invented digest: tests/stacks/test_invalid_values.py, weights: image.)


def test_quota_is_not_read_offline(capsys, out):
    _, text, _ = run_plan(capsys, "prod", "--out", out)
    quota_lines = [line for line in text.splitlines() if "quota " in line and "INFO" in line]
    assert quota_lines, "no quota check in the prod plan"
    for line in quota_lines:
        assert compose.QUOTA_NOT_READ_OFFLINE in line and "available" not in line, line


def test_a_component_refusing_its_arguments_refuses_the_deploy_cleanly(monkeypatch, capsys, out):
    """A value the config checks let through but a component's own check refuses: a clean refusal
    (exit 1) with the component's message and the stack file, not an internal error."""
    from components import vertex

    monkeypatch.setattr(vertex.VertexVllmEndpointArgs, "problems", lambda self: ["planted refusal of a value"])
    status, text, err = run_plan(capsys, "dev", "--out", out)
    assert status == 1, f"exit {status}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert ("Pulumi.dev.yaml: a resource refused a value from this stack file: VertexVllmEndpoint llm-dev-llama-8b: "
            "planted refusal of a value") in text, text


def test_a_value_error_outside_the_components_is_still_a_bug(monkeypatch, capsys, out):
    def broken(*args, **kwargs):
        raise ValueError("planted bug in the program")

    monkeypatch.setattr(compose, "build", broken)
    status, _, err = run_plan(capsys, "dev", "--out", out)
    assert status == 3 and "internal error (a bug): ValueError: planted bug in the program" in err, (status, err)


def test_two_resources_rendering_one_kubernetes_object_refuse_the_plan(tmp_path, capsys, out):
    text = (ROOT / "Pulumi.prod.yaml").read_text(encoding="utf-8")
    assert "platform: gke" in text
    # The workload's namespace set to the metrics adapter's: both would own one Namespace object.
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(text.replace("        nodePool: tpu-v6e\n", "        nodePool: tpu-v6e\n      gke:\n        namespace: custom-metrics\n"),
                    encoding="utf-8")
    status, stdout, err = run_plan(capsys, "--file", str(path), "--out", out)
    assert status in (1, 2), f"exit {status}\n{err}"
    assert "internal error" not in err and "Traceback" not in err, err
    if status == 1:
        assert "are the same Kubernetes object" in stdout, stdout


def test_a_token_quoted_in_an_error_is_not_echoed(monkeypatch, capsys, out):
    token = "hf_" + "Q" * 34

    def broken(*args, **kwargs):
        raise ValueError(f"got {token!r} somewhere")

    monkeypatch.setattr(compose, "build", broken)
    status, _, err = run_plan(capsys, "dev", "--out", out)
    assert status == 3 and token not in err and "hf_(hidden)" in err, err
    from components import vertex

    monkeypatch.undo()
    monkeypatch.setattr(vertex.VertexVllmEndpointArgs, "problems", lambda self: [f"value {token} refused"])
    status, text, err = run_plan(capsys, "dev", "--out", out)
    assert status == 1 and token not in text + err and "hf_(hidden) refused" in text, text
