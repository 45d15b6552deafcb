"""The published CRD and chart-values schemas in tests/components/data, as validators.

A CRD's ``openAPIV3Schema`` is checked the way the API server treats a structural schema: an object
with ``properties`` and neither ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields``
prunes (and with strict field validation, refuses) any other field, so here such an object gets
``additionalProperties: false``. ``metadata`` is the API server's, not the CRD's, and is left open.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DATA = Path(__file__).resolve().parent / "data"
CRD_FILES = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("keda.sh/v1alpha1", "ClusterTriggerAuthentication"): "keda.sh_clustertriggerauthentications.yaml",
    ("http.keda.sh/v1alpha1", "HTTPScaledObject"): "http.keda.sh_httpscaledobjects.yaml",
}


def _closed(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The served version's openAPIV3Schema for ``api_version``/``kind``, closed as the API server closes it."""
    crd = yaml.safe_load((DATA / "crds" / CRD_FILES[(api_version, kind)]).read_text())
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind, f"{api_version} {kind}: wrong file"
    served = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
    assert served, f"{api_version} {kind}: version {version} is not served by the CRD"
    schema = copy.deepcopy(served[0]["schema"]["openAPIV3Schema"])
    schema = _closed(schema)
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def crd_problems(obj: dict[str, Any]) -> list[str]:
    """Every way ``obj`` breaks its published CRD schema (JSON Schema part, plus the CEL rule on
    scale targets: exactly one of port and portName)."""
    schema = crd_schema(obj["apiVersion"], obj["kind"])
    validator = jsonschema.Draft7Validator(schema)
    problems = [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(obj)]
    if obj["kind"] == "HTTPScaledObject":
        ref = obj.get("spec", {}).get("scaleTargetRef", {})
        if ("port" in ref) == ("portName" in ref):
            problems.append("spec.scaleTargetRef: must define either the 'portName' or the 'port' (CRD CEL rule)")
    return problems


@functools.cache
def values_schema(chart: str) -> dict[str, Any]:
    return json.loads((DATA / "helm" / f"{chart}.values.schema.json").read_text())


def values_problems(chart: str, values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(values_schema(chart))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(values)]
