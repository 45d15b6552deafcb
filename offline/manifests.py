"""Kubernetes manifests from a run's registrations, for review and schema checks of the offline plan.

Each Kubernetes object the program registered becomes one YAML file
``<kind>-<namespace or "cluster">-<name>.yaml`` holding apiVersion, kind, metadata and the body
fields as registered (spec, data, stringData, rules, roleRef, subjects, type...). Secrets are
masked: every value the engine holds as a secret becomes ``[secret]``, and the values of a Secret's
``data``/``stringData`` are masked whatever their wrapping. Providers are not objects and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from offline.mocks import Registration, mask_secrets, unwrap_secrets

MASK = "[secret]"
UNKNOWN = "[unknown]"
# Registration inputs that are Pulumi's, not the object's.
_NOT_OBJECT_FIELDS = {"apiVersion", "kind", "metadata", "status"}
_TOKEN = re.compile(r"kubernetes:(?P<group>[^/]+)/(?P<version>[^:]+):(?P<kind>\w+)")


def api_version_of(type_token: str, inputs: Mapping[str, Any]) -> tuple[str, str] | None:
    """(apiVersion, kind) of a Kubernetes registration; None for anything else."""
    if type_token.startswith(("pulumi:providers:", "kubernetes:helm.sh/")):
        return None  # a provider, or a Helm release (the chart's objects are rendered in the cluster, not here)
    api_version, kind = inputs.get("apiVersion"), inputs.get("kind")
    if isinstance(api_version, str) and isinstance(kind, str):
        return api_version, kind
    match = _TOKEN.fullmatch(type_token)
    if not match:
        return None
    group, version, kind = match["group"], match["version"], match["kind"]
    return (version if group == "core" else f"{group}/{version}"), kind


def _drop_nones(value: Any) -> Any:
    """Plain YAML data: no nulls; values still unknown to the engine shown as ``[unknown]``."""
    if isinstance(value, Mapping):
        return {k: _drop_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_nones(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire format carries every number as a float
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return UNKNOWN


def manifest_of(registration: Registration) -> dict[str, Any] | None:
    """The object a Kubernetes registration describes, secrets masked; None when it is not one."""
    if not registration.type.startswith("kubernetes:"):
        return None
    found = api_version_of(registration.type, registration.inputs)
    if found is None:
        return None
    api_version, kind = found
    inputs = mask_secrets(dict(registration.inputs))
    metadata = dict(inputs.get("metadata") or {})
    metadata.setdefault("name", registration.name)
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    for key, value in inputs.items():
        if key not in _NOT_OBJECT_FIELDS:
            obj[key] = value
    if kind == "Secret" and api_version == "v1":
        # Keep the keys (they are referenced by secretKeyRef), never the values.
        for key in ("data", "stringData"):
            raw = unwrap_secrets(registration.inputs.get(key))
            if isinstance(raw, Mapping):
                obj[key] = {k: MASK for k in raw}
            elif raw is not None:
                obj[key] = MASK
    return _drop_nones(obj)


def _file_name(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    scope = meta.get("namespace") or "cluster"
    raw = f"{obj['kind'].lower()}-{scope}-{meta['name']}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw) + ".yaml"


class ManifestConflict(ValueError):
    """Two registrations render the same Kubernetes object (kind, namespace and name)."""


def _short_urn(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if "::" in urn else urn


def write_kubernetes_manifests(registrations: Iterable[Registration], out_dir: Path) -> list[Path]:
    """Write one YAML file per registered Kubernetes object into ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    seen: dict[str, str] = {}
    for registration in registrations:
        obj = manifest_of(registration)
        if obj is None:
            continue
        file_name = _file_name(obj)
        if file_name in seen:
            raise ManifestConflict(f"{_short_urn(registration.urn)} and {_short_urn(seen[file_name])} are the same "
                                   f"Kubernetes object ({file_name.removesuffix('.yaml')}); the second would take "
                                   "over the first. Give them distinct names or namespaces")
        seen[file_name] = registration.urn
        path = out_dir / file_name
        path.write_text(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False))
        written.append(path)
    return written
