"""Property-based tests of the plan's command line: generated and mutated stack files end with exit
0 (planned), 1 (a check refused) or 2 (a config error), never 3 (an internal error) or a
traceback, each within a time bound.

Three generators: structured mutations of the committed stacks (values replaced by other types,
NaN, infinity, huge or negative numbers, unicode text; keys deleted or renamed; sections
replaced), text mutations of the committed files (lines duplicated, deleted or cut, characters
inserted), and random YAML-ish text. The examples are derandomised so `make test` is repeatable;
the number of examples is modest so the suite stays fast (each example is a whole plan).
"""

from __future__ import annotations

import contextlib
import copy
import io
import signal
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline import plan as plan_module
from offline.stackfile import read_stack_text

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "staging", "prod")
# A whole plan takes about a second here; the bound catches hangs (alias bombs, runaway loops)
# with room for a loaded machine.
PLAN_TIME_BOUND_S = 60
PROPERTY_SETTINGS = settings(max_examples=12, deadline=timedelta(seconds=PLAN_TIME_BOUND_S), derandomize=True,
                             database=None, suppress_health_check=[HealthCheck.too_slow])

DOCUMENTS = {stack: read_stack_text(ROOT / f"Pulumi.{stack}.yaml")[1] for stack in STACKS}
TEXTS = {stack: (ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8") for stack in STACKS}


class PlanTookTooLong(Exception):
    pass


def _alarm(signum, frame):
    raise PlanTookTooLong(f"the plan did not finish within {PLAN_TIME_BOUND_S} s")


def plan_file(data: bytes, name: str = "Pulumi.generated.yaml") -> tuple[int, str]:
    """Run the plan's main() on these bytes; (exit status, stdout + stderr). Bounded by an alarm."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / name
        path.write_bytes(data)
        out, err = io.StringIO(), io.StringIO()
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(PLAN_TIME_BOUND_S)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = plan_module.main(["--file", str(path), "--out", str(Path(scratch) / "build")])
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        return status, out.getvalue() + err.getvalue()


def assert_clean(status: int, output: str, data: bytes) -> None:
    shown = data[:2000].decode("utf-8", "replace")
    assert status in (0, 1, 2), f"exit {status} for the stack file:\n{shown}\n--- output:\n{output[-3000:]}"
    assert "Traceback" not in output and "internal error" not in output, \
        f"not a clean ending for the stack file:\n{shown}\n--- output:\n{output[-3000:]}"


# ---------------------------------------------------------------------------- structured mutations

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
    st.sampled_from([0, -1, 1, 2 ** 53 + 1, 10 ** 300, -(10 ** 300)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.9, 1e308]),
    st.text(max_size=40),
    st.sampled_from(["", "nan", "inf", "-1", "1e999", "9" * 400, "us-central1-a", "hf_" + "x" * 34, "ラマ",
                     "kube-system", "--port=1", "latest", "gs://", "a..b", "Team: ML Platform"]),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=10), SCALARS, max_size=3))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a document (keys of maps, indexes of lists)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append(prefix + (key,))
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.append(prefix + (index,))
            found += _paths(value, prefix + (index,))
    return found


def _parent(document: Any, path: tuple) -> Any:
    node = document
    for part in path[:-1]:
        node = node[part]
    return node


@st.composite
def mutated_documents(draw) -> bytes:
    stack = draw(st.sampled_from(STACKS))
    document = copy.deepcopy(DOCUMENTS[stack])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(document["config"])
        if not paths:
            break
        path = ("config",) + draw(st.sampled_from(paths))
        parent, key = _parent(document, path), path[-1]
        operation = draw(st.sampled_from(["replace", "replace", "delete", "rename", "add"]))
        if operation == "replace":
            parent[key] = draw(VALUES)
        elif operation == "delete":
            del parent[key]
        elif operation == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=20))] = parent.pop(key)
        elif operation == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.text(min_size=1, max_size=20))] = draw(VALUES)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode("utf-8")


@PROPERTY_SETTINGS
@given(mutated_documents())
def test_mutated_committed_stacks_end_cleanly(data: bytes):
    assert_clean(*plan_file(data), data)


# ---------------------------------------------------------------------------- text mutations


@st.composite
def mutated_texts(draw) -> bytes:
    lines = TEXTS[draw(st.sampled_from(STACKS))].splitlines(keepends=True)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=max(0, len(lines) - 1)))
        operation = draw(st.sampled_from(["duplicate", "delete", "cut", "insert"]))
        if not lines:
            break
        if operation == "duplicate":
            lines.insert(at, lines[at])
        elif operation == "delete":
            del lines[at]
        elif operation == "cut":
            lines = lines[:at] + [lines[at][: draw(st.integers(min_value=0, max_value=len(lines[at])))]]
        else:
            line = lines[at]
            column = draw(st.integers(min_value=0, max_value=len(line)))
            lines[at] = line[:column] + draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=8)) + line[column:]
    return "".join(lines).encode("utf-8", "surrogatepass")


@PROPERTY_SETTINGS
@given(mutated_texts())
def test_text_mutations_of_committed_stacks_end_cleanly(data: bytes):
    assert_clean(*plan_file(data), data)


# ---------------------------------------------------------------------------- random text and bytes

YAML_ALPHABET = st.sampled_from(list("config:llm-serving:deployments&*[]{},-?!|>'\"#%@` \n\t0123456789.eE+x"))


@PROPERTY_SETTINGS
@given(st.one_of(st.text(alphabet=YAML_ALPHABET, max_size=300).map(lambda t: t.encode("utf-8")),
                 st.binary(max_size=300),
                 st.text(alphabet=YAML_ALPHABET, max_size=200).map(lambda t: ("config:\n  " + t).encode("utf-8"))))
def test_random_text_ends_cleanly(data: bytes):
    assert_clean(*plan_file(data), data)
