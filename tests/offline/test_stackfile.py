"""The stack-file reader: every malformed file is a config error (exit 2) naming the file and the
line, in bounded time, through the plan's command line as a user runs it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from offline import plan as plan_module
from offline.stackfile import MAX_BYTES, StackFileError, read_stack_file

ROOT = Path(__file__).resolve().parents[2]
VALID_HEAD = "config:\n  gcp:project: acme-llm-dev\n  gcp:region: us-central1\n  llm-serving:environment: dev\n"


def _alias_bomb() -> str:
    """About 600 bytes that expand to 9^10 values under an unchecked key."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return VALID_HEAD + "  llm-serving:junk:\n" + "".join(f"    {line}\n" for line in lines)


# (case, file bytes, line the message must name or None, words the message must contain)
MALFORMED: list[tuple[str, bytes, int | None, str]] = [
    ("syntax error", b"config:\n  gcp:project: [acme\n", 3, "not valid YAML"),
    ("tab indentation", b"config:\n\tgcp:project: acme\n", 2, "not valid YAML"),
    ("list document", b"- config\n- x\n", 1, "not a map"),
    ("scalar document", b"just text\n", 1, "not a map"),
    ("config is a list", b"config:\n  - gcp:project\n", 2, "`config:` holds a list"),
    ("config is a scalar", b"config: 5\n", 1, "`config:` holds the value '5'"),
    ("not UTF-8", VALID_HEAD.encode() + b"  llm-serving:namePrefix: caf\xe9\n", 5, "not UTF-8"),
    ("unhashable key", VALID_HEAD.encode() + b"  ? [a, b]\n  : 1\n", 5, "used as a key"),
    ("duplicate top-level key", VALID_HEAD.encode() + b"  gcp:project: other-project\n", 5, "first at line 2"),
    ("duplicate deployment", (VALID_HEAD + "  llm-serving:deployments:\n    a:\n      platform: vertex\n"
                              "    a:\n      platform: cloudrun\n").encode(), 8, "duplicate key 'a' (first at line 6)"),
    ("control character", VALID_HEAD.encode() + b"  llm-serving:namePrefix: a\x07b\n", 5, "not allowed in YAML"),
    ("alias bomb", _alias_bomb().encode(), 7, "aliases expand"),
    ("recursive alias", VALID_HEAD.encode() + b"  llm-serving:junk: &a [*a]\n", 5, "loop"),
    ("deep nesting", VALID_HEAD.encode() + b"  llm-serving:junk: " + b"[" * 500 + b"]" * 500 + b"\n", 5, "nested more"),
    ("oversized", VALID_HEAD.encode() + b"  llm-serving:junk: '" + b"a" * MAX_BYTES + b"'\n", None, "larger than"),
    ("undefined alias", VALID_HEAD.encode() + b"  llm-serving:junk: *nothing\n", 5, "not valid YAML"),
    ("python tag", VALID_HEAD.encode() + b"  llm-serving:junk: !!python/object:os.system {}\n", 5, "not valid YAML"),
]


@pytest.mark.parametrize("case,data,line,words", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_stack_file_is_a_config_error_naming_file_and_line(tmp_path, capsys, case, data, line, words):
    path = tmp_path / "Pulumi.broken.yaml"
    path.write_bytes(data)
    started = time.monotonic()
    status = plan_module.main(["--file", str(path), "--out", str(tmp_path / "build")])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert status == 2, f"{case}: exit {status}, expected 2; stderr:\n{err}"
    assert "Traceback" not in err and "internal error" not in err, f"{case}: not a clean config error:\n{err}"
    assert err.startswith("Pulumi.broken.yaml: "), f"{case}: the message does not name the file:\n{err}"
    if line is not None:
        assert f"line {line}:" in err, f"{case}: the message does not name line {line}:\n{err}"
    assert words in err, f"{case}: expected {words!r} in:\n{err}"
    assert elapsed < 10, f"{case}: took {elapsed:.1f} s"


def test_committed_stacks_read_without_problems():
    for stack in ("dev", "staging", "prod"):
        values, _ = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
        assert values["llm-serving:environment"] == stack, f"Pulumi.{stack}.yaml: {sorted(values)}"


def test_secure_values_become_a_secret_placeholder(tmp_path):
    path = tmp_path / "Pulumi.s.yaml"
    path.write_text(VALID_HEAD + "  llm-serving:hfToken:\n    secure: AAABAC==\n", encoding="utf-8")
    values, secret_keys = read_stack_file(path)
    assert secret_keys == {"llm-serving:hfToken"}
    assert values["llm-serving:hfToken"] != {"secure": "AAABAC=="}, "the ciphertext was passed on as the value"


def test_dates_stay_text_as_pulumi_reads_them(tmp_path):
    path = tmp_path / "Pulumi.d.yaml"
    path.write_text(VALID_HEAD + "  llm-serving:deployments:\n    a:\n      modelRevision: 2024-01-01\n", encoding="utf-8")
    values, _ = read_stack_file(path)
    assert values["llm-serving:deployments"]["a"]["modelRevision"] == "2024-01-01"


def test_merge_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "Pulumi.m.yaml"
    path.write_text("base: &base {platform: vertex}\n" + VALID_HEAD
                    + "  llm-serving:deployments:\n    a:\n      <<: *base\n      platform: cloudrun\n", encoding="utf-8")
    values, _ = read_stack_file(path)
    assert values["llm-serving:deployments"]["a"]["platform"] == "cloudrun"


def test_unreadable_file_is_a_stack_file_error(tmp_path):
    with pytest.raises(StackFileError) as info:
        read_stack_file(tmp_path)  # a directory
    assert "cannot be read" in str(info.value), str(info.value)
