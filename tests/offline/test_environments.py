"""Pulumi ESC environments in the offline plan: a stack's `environment:` list read from local
definition files, merged as Pulumi merges them (environments in order, the stack file on top,
objects key by key), secrets kept secret, and every bad file refused with exit 2 naming it.

Each test runs the real program under the mock engine through the plan's command line and reads
what it registered, so a value that did not arrive from the environment fails here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline import plan as plan_module
from offline.environments import apply_environments, merge_patch, read_environment, read_stack_with_environments
from offline.plan import plan, project_name
from offline.stackfile import OFFLINE_SECRET

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "environments" / "llm-serving" / "dev.yaml"
CANARY = "hf_environmentCanary_52b7d1e0"
BUCKET = "gcp:storage/bucket:Bucket"
SECRET_VERSION = "gcp:secretmanager/secretVersion:SecretVersion"


def run_plan(capsys, *argv: str) -> tuple[int, str, str]:
    status = plan_module.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def dev_document() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text(encoding="utf-8"))


def write_stack(directory: Path, document: dict[str, Any]) -> Path:
    path = directory / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def write_environment(directory: Path, name: str, pulumi_config: Any, **extra: Any) -> Path:
    path = directory / "environments" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"values": {"pulumiConfig": pulumi_config}, **extra}, sort_keys=False),
                    encoding="utf-8")
    return path


def planned(path: Path, *environment_files: Path):
    values, secret_keys, source = read_stack_with_environments(path, project_name(), environment_files)
    result = plan(values, secret_keys, stack="dev", source=source)
    assert result.run is not None, f"{source} did not plan: {[c.message for c in result.checks]}"
    return result


def registered(result) -> list[tuple[str, str, str]]:
    return sorted((r["type"], r["name"], json.dumps(r["inputs"], sort_keys=True, default=str))
                  for r in result.resources)


def only(result, type_token: str) -> dict[str, Any]:
    found = [r for r in result.resources if r["type"] == type_token]
    assert len(found) == 1, f"expected one {type_token}, found {[r['name'] for r in found]}"
    return found[0]


# ---------------------------------------------------------------------------- the committed example


def test_example_environment_gives_dev_exactly_the_values_the_stack_file_had(tmp_path: Path):
    """Pulumi.dev.yaml with the keys the example environment holds moved out of it plans the same."""
    example = read_environment(EXAMPLE, project_name())
    assert example.config, f"{EXAMPLE} provides no pulumiConfig"
    document = dev_document()
    config = document["config"]
    for key, value in example.config.items():
        assert key in config, f"{EXAMPLE}: {key} is not a key of Pulumi.dev.yaml; keep the example in step"
        if isinstance(value, dict):
            for inner in value:
                assert config[key].pop(inner) == value[inner], f"{EXAMPLE}: {key}.{inner} differs from Pulumi.dev.yaml"
            if not config[key]:
                del config[key]
        else:
            assert config.pop(key) == value, f"{EXAMPLE}: {key} differs from Pulumi.dev.yaml"
    assert "gcp:project" not in config, "the example should take gcp:project out of the stack file"
    document["environment"] = ["llm-serving/dev"]
    stack = write_stack(tmp_path, document)
    shutil.copytree(ROOT / "environments", tmp_path / "environments")

    with_environment = planned(stack)
    without = planned(ROOT / "Pulumi.dev.yaml")
    assert registered(with_environment) == registered(without), \
        "dev with its shared values in the environment registers different resources than Pulumi.dev.yaml"
    assert with_environment.outputs == without.outputs, "dev with the environment exports different outputs"


def test_committed_stacks_import_no_environment():
    """A committed stack that imported one would need Pulumi Cloud to preview; they keep their values."""
    for path in sorted(ROOT.glob("Pulumi.*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert "environment" not in document, f"{path.name} imports {document['environment']}"


# ---------------------------------------------------------------------------- precedence


def test_stack_file_wins_and_objects_merge_key_by_key(tmp_path: Path, capsys):
    document = dev_document()
    document["environment"] = ["llm-serving/shared"]
    write_environment(tmp_path, "llm-serving/shared", {
        "gcp:region": "europe-west4",  # the stack file sets us-central1: the stack wins
        "llm-serving:labels": {"team": "from-environment", "owner": "platform"},  # merged with the stack's labels
        "bucket": {"softDeleteDays": 0},  # no namespace: the project's; merged into llm-serving:bucket
    })
    stack = write_stack(tmp_path, document)
    result = planned(stack)
    bucket = only(result, BUCKET)["inputs"]
    assert bucket["location"].lower() == "us-central1", f"bucket: location {bucket['location']}; the stack file's region should win"
    labels = bucket["labels"]
    assert labels["team"] == "ml-platform", f"bucket: labels {labels}; the stack file's team label should win"
    assert labels["owner"] == "platform", f"bucket: labels {labels}; the environment's owner label is missing"
    assert labels["cost-center"] == "llm-dev", f"bucket: labels {labels}; the stack file's own label is missing"
    assert bucket["forceDestroy"] is True, f"bucket: forceDestroy {bucket['forceDestroy']}; the stack's bucket key was replaced"
    assert bucket.get("softDeletePolicy", {}).get("retentionDurationSeconds") == 0, \
        f"bucket: softDeletePolicy {bucket.get('softDeletePolicy')}; the unqualified environment key did not arrive"

    status, stdout, err = run_plan(capsys, "--file", str(stack), "--out", str(tmp_path / "build"))
    assert status == 0, f"plan of {stack} with an environment: exit {status}\n{err}"


def test_later_environment_wins_and_null_unsets(tmp_path: Path):
    first = write_environment(tmp_path, "a/first", {"llm-serving:labels": {"tier": "one", "owner": "first"}})
    second = write_environment(tmp_path, "a/second", {"llm-serving:labels": {"tier": "two", "owner": None}})
    document = dev_document()
    stack = write_stack(tmp_path, document)
    labels = only(planned(stack, first, second), BUCKET)["inputs"]["labels"]
    assert labels["tier"] == "two", f"bucket: labels {labels}; the later environment should win"
    assert "owner" not in labels, f"bucket: labels {labels}; null in the later environment should unset owner"


def test_merge_patch_is_rfc_7396():
    # RFC 7396 Appendix A examples.
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert merge_patch(["a", "b"], ["c", "d"]) == ["c", "d"]
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}


# ---------------------------------------------------------------------------- secrets


def _stack_with_token_from(tmp_path: Path, token_value: Any) -> Path:
    document = dev_document()
    del document["config"]["llm-serving:hfTokenSecret"]
    document["environment"] = ["llm-serving/secrets"]
    write_environment(tmp_path, "llm-serving/secrets", {"llm-serving:hfToken": token_value})
    return write_stack(tmp_path, document)


def test_a_secret_from_an_environment_stays_secret_in_the_plan(tmp_path: Path, capsys):
    stack = _stack_with_token_from(tmp_path, {"fn::secret": CANARY})
    values, secret_keys, _ = read_stack_with_environments(stack, project_name())
    assert "llm-serving:hfToken" in secret_keys, "the environment's fn::secret did not make hfToken a secret key"

    status, text, err = run_plan(capsys, "--file", str(stack), "--out", str(tmp_path / "build"))
    assert status == 0, f"plan with the token from an environment: exit {status}\n{err}"
    assert CANARY not in text + err, "the plan printed the token from the environment"
    status, document, err = run_plan(capsys, "--file", str(stack), "--json", "--out", str(tmp_path / "build"))
    assert status == 0 and CANARY not in document + err, "the JSON plan printed the token from the environment"
    versions = [r for r in json.loads(document)["resources"] if r["type"] == SECRET_VERSION]
    assert versions and all(v["inputs"]["secretData"] == "[secret]" for v in versions), \
        f"secret versions: {[(v['name'], v['inputs'].get('secretData')) for v in versions]}"
    leaked = [p for p in (tmp_path / "build").rglob("*") if p.is_file() and CANARY in p.read_text(errors="replace")]
    assert not leaked, f"the token reached {leaked}"


def test_the_same_token_without_fn_secret_is_refused_as_plain_text(tmp_path: Path, capsys):
    """What makes the test above able to fail: a plain hfToken is refused, naming the stack and environment."""
    stack = _stack_with_token_from(tmp_path, CANARY)
    status, _, err = run_plan(capsys, "--file", str(stack), "--out", str(tmp_path / "build"))
    assert status == 2, f"plain hfToken from an environment: exit {status}\n{err}"
    assert "llm-serving:hfToken" in err and "environments/llm-serving/secrets.yaml" in err, err
    assert CANARY not in err, "the refusal echoed the token"


def test_an_encrypted_secret_becomes_the_offline_placeholder(tmp_path: Path):
    stack = _stack_with_token_from(tmp_path, {"fn::secret": {"ciphertext": "ZXNjeAAAAAEAAAEAexample"}})
    values, secret_keys, _ = read_stack_with_environments(stack, project_name())
    assert values["llm-serving:hfToken"] == OFFLINE_SECRET and "llm-serving:hfToken" in secret_keys, \
        f"hfToken: {values['llm-serving:hfToken']!r}, secret={('llm-serving:hfToken' in secret_keys)}"


def test_a_stack_secret_stays_secret_when_an_environment_adds_to_its_key():
    environment = read_environment(EXAMPLE, project_name())
    _, secret_keys = apply_environments({"llm-serving:hfToken": OFFLINE_SECRET}, {"llm-serving:hfToken"}, [environment])
    assert "llm-serving:hfToken" in secret_keys, "a secure: stack value lost its secrecy in the merge"


# ---------------------------------------------------------------------------- bad files: exit 2, naming the file


def _plan_with_environment_text(tmp_path: Path, capsys, text: str | None) -> tuple[int, str, Path]:
    document = dev_document()
    document["environment"] = ["llm-serving/broken"]
    stack = write_stack(tmp_path, document)
    env = tmp_path / "environments" / "llm-serving" / "broken.yaml"
    if text is not None:
        env.parent.mkdir(parents=True, exist_ok=True)
        env.write_text(text, encoding="utf-8")
    status, _, err = run_plan(capsys, "--file", str(stack), "--out", str(tmp_path / "build"))
    return status, err, env


@pytest.mark.parametrize("text, expected", [
    (None, "no such environment file"),
    ("values:\n  pulumiConfig:\n    gcp:region: [unclosed\n", "not valid YAML"),
    ("values: [1, 2]\n", "`values:` is a map"),
    ("values:\n  pulumiConfig: us-central1\n", "values.pulumiConfig: got 'us-central1'"),
    ("imports: [llm-serving/base]\nvalues: {}\n", "imported environments cannot be opened offline"),
    ("values:\n  pulumiConfig:\n    gcp:region: ${region}\n", "values.pulumiConfig.gcp:region: '${region}': `${...}` interpolation"),
    ("values:\n  pulumiConfig:\n    llm-serving:hfToken:\n      fn::open::gcp-secrets: {access: {x: {name: hf}}}\n",
     "values.pulumiConfig.llm-serving:hfToken: fn::open::gcp-secrets cannot be evaluated offline"),
    ("values:\n  pulumiConfig:\n    a:b:c: 1\n", "values.pulumiConfig.a:b:c: a config key is `namespace:name`"),
    ("values:\n  pulumiConfig:\n    gcp:region: a\n    gcp:region: b\n", "duplicate key"),
])
def test_a_missing_or_malformed_environment_file_exits_2_naming_it(tmp_path: Path, capsys, text, expected):
    status, err, env = _plan_with_environment_text(tmp_path, capsys, text)
    assert status == 2, f"environment file {text!r}: exit {status}\n{err}"
    assert str(env) in err, f"environment file {text!r}: the message does not name {env}:\n{err}"
    assert expected in err, f"environment file {text!r}: expected {expected!r} in:\n{err}"
    assert "Traceback" not in err, err


def test_an_explicit_environment_file_that_does_not_exist_exits_2(tmp_path: Path, capsys):
    missing = tmp_path / "nope.yaml"
    status, _, err = run_plan(capsys, "dev", "--environment-file", str(missing), "--out", str(tmp_path / "build"))
    assert status == 2 and str(missing) in err and "no such environment file" in err, f"exit {status}\n{err}"


def test_a_malformed_environment_list_in_the_stack_file_exits_2(tmp_path: Path, capsys):
    document = dev_document()
    document["environment"] = "llm-serving/dev"
    stack = write_stack(tmp_path, document)
    status, _, err = run_plan(capsys, "--file", str(stack), "--out", str(tmp_path / "build"))
    assert status == 2 and "Pulumi.dev.yaml" in err and "environment: got 'llm-serving/dev'" in err, f"exit {status}\n{err}"
