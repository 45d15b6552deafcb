"""The program's config loader never fails with a traceback: whatever the engine passes (JSON text,
odd numbers, unhashable or huge values), the outcome is a StackConfig or a ConfigError naming
the key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stacks import config as config_module
from stacks.config import load
from stacks.schema import ConfigError

SOURCE = "Pulumi.robust.yaml"
BASE = {"gcp:project": "acme-llm-dev", "gcp:region": "us-central1", "llm-serving:environment": "dev"}
DEPLOYMENT = {"platform": "vertex", "model": "meta-llama/Llama-3.1-8B-Instruct"}


def load_engine_style(extra: dict[str, Any]) -> Any:
    """As `pulumi preview` passes config: every value a string, structured ones as JSON text."""
    values = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in {**BASE, **extra}.items()}
    return load(values, set(), source=SOURCE, stack="robust")


ODD_DEPLOYMENTS = {
    "nan target": {"scaling": {"target": float("nan")}},
    "infinite gpu memory utilization": {"vllm": {"gpuMemoryUtilization": float("inf")}},
    "huge max model len": {"vllm": {"maxModelLen": 10 ** 40}},
    "huge float": {"vllm": {"gpuMemoryUtilization": 10 ** 400}},
    "string nan": {"scaling": {"target": "nan"}},
    "list for a map": {"vllm": [1, 2]},
    "map for a list": {"vllm": {"extraArgs": {"a": 1}}},
    "nested lists as labels": {"labels": {"a": [[[]]]}},
}


@pytest.mark.parametrize("name", list(ODD_DEPLOYMENTS))
def test_odd_values_are_config_problems_naming_the_key(name):
    with pytest.raises(ConfigError) as info:
        load_engine_style({"llm-serving:deployments": {"x1": {**DEPLOYMENT, **ODD_DEPLOYMENTS[name]}}})
    text = str(info.value)
    assert text.startswith(f"{SOURCE}: "), text
    assert "llm-serving:deployments.x1." in text, f"{name}: the key is not named:\n{text}"


def test_json_nested_too_deeply_is_a_problem_not_a_crash():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ConfigError) as info:
        load({**BASE, "llm-serving:deployments": deep}, set(), source=SOURCE, stack="robust")
    assert "llm-serving:deployments" in str(info.value)


def test_an_unexpected_failure_while_parsing_a_value_names_its_key_and_keeps_the_others(monkeypatch):
    """A crash in parsing one key (a case no rule anticipated) becomes that key's problem; the
    other keys are still checked and reported."""
    real = config_module.parse

    def parse_with_a_bug(cls, raw, path, problems):
        if isinstance(raw, dict) and "labels" in raw:
            raise RuntimeError("planted bug")
        return real(cls, raw, path, problems)

    monkeypatch.setattr(config_module, "parse", parse_with_a_bug)
    with pytest.raises(ConfigError) as info:
        load({**BASE, "llm-serving:labels": {"team": "x"}, "llm-serving:checkQuota": "maybe"}, set(),
             source=SOURCE, stack="robust")
    rendered = [p.render() for p in info.value.problems]
    assert any(line.startswith("llm-serving:labels: this value could not be read (RuntimeError: planted bug)")
               for line in rendered), rendered
    assert any(line.startswith("llm-serving:checkQuota: got 'maybe'") for line in rendered), rendered


def test_any_other_failure_in_the_loader_is_still_a_config_error(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("planted")

    monkeypatch.setattr(config_module, "_validate_stack", broken)
    with pytest.raises(ConfigError) as info:
        load_engine_style({"llm-serving:deployments": {"x1": DEPLOYMENT}})
    assert "could not be read (KeyError" in str(info.value), str(info.value)
