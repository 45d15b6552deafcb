"""Every component's usage example (tests/components/examples/) runs under the mock engine and
returns the output a reader of the example would expect."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

from offline.runner import run_under_mocks

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = Path(__file__).resolve().parent / "examples"

# What each example's returned output must be, from the example's own inputs.
EXPECTED: dict[str, Callable[[Any], bool]] = {
    "project_apis": lambda v: v == ["run.googleapis.com", "secretmanager.googleapis.com"],
    "model_bucket": lambda v: v == "gs://my-project-llm-models",
    "service_account": lambda v: v == "serviceAccount:llm-dev-gemma@my-project.iam.gserviceaccount.com",
    "hf_token": lambda v: v == "llm-dev-hf-token",
    "api_key": lambda v: v == "gcloud secrets versions access latest --secret=llm-dev-llama-api-key --project=my-project",
    "registry": lambda v: v == "us-central1-docker.pkg.dev/my-project/llm-dev-images",
    "cloudrun": lambda v: re.fullmatch(r"https://llm-dev-gemma-\d+\.us-central1\.run\.app", v) is not None,
    "image_build": lambda v: v.startswith("us-central1-docker.pkg.dev/my-project/llm-dev-images/vllm-gemma-3-1b-it:"),
    "vertex": lambda v: re.fullmatch(r"https://.+/v1beta1/projects/\d+/locations/us-central1/endpoints/\d+", v) is not None,
    "gke_cluster": lambda v: v == "llm-dev-gke",
    "compute_class": lambda v: v == ["pool tpu", "flex-start", "spot"],
    "gke_workload": lambda v: v == "prometheus.googleapis.com|vllm:num_requests_waiting|gauge",
    "weights_copy": lambda v: v == ("gs://my-project-llm-models/models/google/gemma-3-1b-it/"
                                    "dcc83ea841ab6100d6b47a070329e1ba4cf78752"),
    "observability": lambda v: re.fullmatch(r"https://console\.cloud\.google\.com/monitoring/dashboards/builder/[0-9a-f]+\?project=my-project", v) is not None,
    "keda": lambda v: v == "keda-add-ons-http-external-scaler.keda:9090",
    "keda_scaling": lambda v: v == "http://vllm-gemma-wake.llm-serving.svc.cluster.local:8080",
    "metrics_adapter": lambda v: v == ("principal://iam.googleapis.com/projects/123456789012/locations/global/"
                                       "workloadIdentityPools/my-project.svc.id.goog/subject/ns/custom-metrics/"
                                       "sa/custom-metrics-stackdriver-adapter"),
}


def component_modules() -> list[str]:
    return sorted(p.stem for p in (ROOT / "components").glob("*.py")
                  if re.search(r"^class \w+\(pulumi\.ComponentResource\)", p.read_text(), re.MULTILINE))


def test_every_component_module_has_an_example():
    missing = [m for m in component_modules() if not (EXAMPLES / f"{m}.py").is_file()]
    assert not missing, f"components without a usage example in tests/components/examples/: {missing}"
    assert set(EXPECTED) == set(component_modules()), sorted(set(EXPECTED) ^ set(component_modules()))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_under_mocks(name):
    example = importlib.import_module(f"tests.components.examples.{name}").example

    def program() -> None:
        pulumi.export("result", example())

    result = run_under_mocks(program)
    value = result.outputs["result"].value
    assert EXPECTED[name](value), f"examples/{name}.py returned {value!r}"
    components = [r for r in result.registrations if r.type.startswith("llm-serving:")]
    assert components, f"examples/{name}.py registered no component"
    for component in components:
        assert result.children_of(component), f"{component.name} ({component.type}) has no children"
