"""Offline plan: what a stack would create, with no cloud account, CLI or network.

    python -m offline.plan dev                # Pulumi.dev.yaml at the project root
    python -m offline.plan --file PATH        # any stack file
    python -m offline.plan prod --json        # one JSON document
    python -m offline.plan prod --verbose     # every input of every resource
    python -m offline.plan dev --environment-file environments/llm-serving/dev.yaml   # with a Pulumi ESC environment

It runs the real program (``stacks.program.run``) under Pulumi's mock engine
(``offline.mocks``) and prints the resource tree with key inputs (secrets as ``[secret]``, each
where it sits) and resource options (protect, delete-before-replace, replace-on-changes,
ignore-changes, aliases) and, for a Vertex AI deployment, which changes update in place and which
replace it (``(on change)``), the stack outputs, every check's result and a fit table. Values the
mock engine makes up (project number, URLs, digests, ids) are marked ``(invented offline)`` in
text and listed under ``invented`` / ``invented_outputs`` in JSON; quota is "not read offline".
Kubernetes objects are written as YAML under ``build/<stack>/``. Values stored with ``pulumi config set --secret`` cannot be decrypted
offline; they are replaced by a placeholder that is itself treated as a secret.

Exit status: 0 planned; 1 a check failed or the policy pack reports a violation (the deploy would be
refused); 2 the stack file is invalid or unreadable; 3 an internal error (a bug: one line, the
traceback with ``--debug``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from components import vertex
from offline.cli import DEBUG_FLAG, INVALID_INPUT, OK, REFUSED, guarded
from offline.environments import read_stack_with_environments
from offline.mocks import INVENTED_MARK, CloudMocks, mask_secrets
from offline.policies import Violation, pack_config, policy_config_path, run_policies
from offline.runner import RunResult, run_under_mocks
from offline.stackfile import OFFLINE_SECRET, read_stack_file
from stacks.catalog import CATALOG
from stacks.config import load
from stacks.findings import ERROR, Check
from stacks.program import StackCheckFailed, run
from stacks.resolved import ResolvedStack
from stacks.schema import ConfigError

ROOT = Path(__file__).resolve().parent.parent
__all__ = ["OFFLINE_SECRET", "PlanResult", "main", "plan", "read_stack_file", "render_text"]

# Inputs worth a line in the tree, by resource type (dotted paths; a prefix selects a subtree).
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "gcp:projects/service:Service": ("service", "disableOnDestroy"),
    "gcp:serviceaccount/account:Account": ("accountId",),
    "gcp:projects/iAMMember:IAMMember": ("role", "member"),
    "gcp:storage/bucket:Bucket": ("name", "location", "uniformBucketLevelAccess", "publicAccessPrevention",
                                  "forceDestroy"),
    "gcp:secretmanager/secret:Secret": ("secretId", "replication"),
    "gcp:secretmanager/secretVersion:SecretVersion": ("secretData",),
    "gcp:secretmanager/secretIamMember:SecretIamMember": ("role", "member"),
    "gcp:artifactregistry/repository:Repository": ("repositoryId", "mode", "remoteRepositoryConfig.dockerRepository"),
    "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember": ("repository", "role", "member"),
    "gcp:cloudrunv2/service:Service": ("name", "ingress", "deletionProtection", "template.nodeSelector", "template.gpuZonalRedundancyDisabled",
                                       "template.scaling", "template.serviceAccount", "template.containers",
                                       "template.volumes", "scaling"),
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": ("role", "member"),
    "gcp:vertex/aiEndpointWithModelGardenDeployment:AiEndpointWithModelGardenDeployment": (
        "huggingFaceModelId", "modelConfig", "deployConfig", "endpointConfig"),
    "gcp:container/cluster:Cluster": ("name", "location", "minMasterVersion", "releaseChannel", "workloadIdentityConfig",
                                      "addonsConfig.gcsFuseCsiDriverConfig", "monitoringConfig.managedPrometheus",
                                      "deletionProtection", "enableAutopilot", "datapathProvider",
                                      "privateClusterConfig", "masterAuthorizedNetworksConfig"),
    "gcp:container/nodePool:NodePool": ("nodeConfig.machineType", "nodeConfig.spot", "placementPolicy", "autoscaling"),
    "gcp:storage/bucketIAMMember:BucketIAMMember": ("bucket", "role", "member", "condition.expression"),
    "command:local:Command": ("triggers",),
    "gcp:monitoring/alertPolicy:AlertPolicy": ("displayName", "severity", "conditions[0].conditionPrometheusQueryLanguage",
                                              "notificationChannels"),
    "gcp:monitoring/notificationChannel:NotificationChannel": ("type", "labels"),
    "gcp:monitoring/dashboard:Dashboard": ("dashboardJson",),
}
K8S_KEY_INPUTS = ("metadata.name", "metadata.namespace", "spec.template.spec.nodeSelector",
                  "spec.template.spec.containers", "spec.ports", "spec.type", "spec.metrics", "spec.endpoints",
                  "spec.minReplicas", "spec.maxReplicas")


VERTEX_DEPLOYMENT = "gcp:vertex/aiEndpointWithModelGardenDeployment:AiEndpointWithModelGardenDeployment"


def change_kinds(resource_type: str, options: dict[str, Any]) -> list[str]:
    """What a change does to this resource, one line per kind of input, for the types that have a known answer."""
    if resource_type != VERTEX_DEPLOYMENT:
        return []
    return list(vertex.change_kinds_text(bool(options.get("deleteBeforeReplace"))))


def _leaf_paths(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {p: v for k, item in value.items() for p, v in _leaf_paths(item, f"{path}.{k}" if path else str(k)).items()}
    if isinstance(value, list):
        return {p: v for i, item in enumerate(value) for p, v in _leaf_paths(item, f"{path}[{i}]").items()} or {path: []}
    return {path: value}


def planned_change(resource_type: str, options: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> tuple[str, list[str]]:
    """How the engine would carry a resource from ``old`` to ``new`` inputs: ``same``, ``update`` (in
    place) or ``replace``, and the changed input paths.

    Replacement comes from the resource's ``replaceOnChanges`` option and, for the Vertex AI
    deployment, from the provider's schema as ``components.vertex.change_kind`` records it; other
    types are reported as ``update`` (their provider decides at preview)."""
    before, after = _leaf_paths(old), _leaf_paths(new)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    if not changed:
        return "same", []
    forced = options.get("replaceOnChanges") or []
    if any(p == f or p.startswith((f + ".", f + "[")) for p in changed for f in forced):
        return "replace", changed
    if resource_type == VERTEX_DEPLOYMENT and any(vertex.change_kind(p) == "replace" for p in changed):
        return "replace", changed
    return "update", changed


INVENTED_NOTE = ("Planned under Pulumi's mock engine: nothing is created. Values it makes up (project number, "
                 "URLs, digests, ids) are marked (invented offline) / listed under `invented`; quota is not read.")


def invented_paths(value: Any, is_invented: Any, path: str = "") -> list[str]:
    """Dotted paths of the leaves of ``value`` that hold an invented value."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in invented_paths(v, is_invented, f"{path}.{k}" if path else str(k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in invented_paths(v, is_invented, f"{path}[{i}]")]
    return [path] if is_invented(value) else []


@dataclass
class PlanResult:
    stack: str
    source: str
    resources: list[dict] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    resolved: Optional[ResolvedStack] = None
    run: Optional[RunResult] = None
    manifests: list[Path] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)  # the policy pack's findings
    failed: bool = False
    # Paths of output values that hold something the mock engine made up.
    invented_outputs: list[str] = field(default_factory=list)
    invented_tokens: frozenset[str] = frozenset()

    def is_invented(self, value: Any) -> bool:
        """Does this plain value contain anything the mock engine made up?"""
        return isinstance(value, str) and any(token in value for token in self.invented_tokens)

    def as_json(self) -> dict:
        return {
            "stack": self.stack,
            "note": INVENTED_NOTE,
            "resources": self.resources,
            "outputs": self.outputs,
            "invented_outputs": self.invented_outputs,
            "checks": [{"deployment": c.deployment, "level": c.level, "message": c.message} for c in self.checks],
            "policy_violations": [{"policy": v.policy, "resource": v.resource, "message": v.message}
                                  for v in self.violations],
            "fit": fit_rows(self.resolved) if self.resolved else [],
            "capacity_cost": capacity_rows(self.resolved) if self.resolved else [],
            "startup": startup_rows(self.resolved) if self.resolved else [],
        }


def project_name() -> str:
    with open(ROOT / "Pulumi.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)["name"]


def engine_values(values: dict[str, Any]) -> dict[str, str]:
    """Config as the Pulumi engine hands it to a program: structured values as JSON strings."""
    return {k: (json.dumps(v, default=str) if isinstance(v, (dict, list)) else ("true" if v is True else "false" if v is False else str(v)))
            for k, v in values.items()}


def plan(values: dict[str, Any], secret_keys: set[str], *, stack: str, source: str,
         mocks: Optional[CloudMocks] = None, out_dir: Optional[Path] = None) -> PlanResult:
    """Plan one stack. Raises ConfigError for an invalid stack file."""
    stack_config = load(values, secret_keys, source=source, stack=stack)  # fail fast, before any engine work
    result = PlanResult(stack=stack, source=source)
    observed: dict[str, ResolvedStack] = {}
    mocks = mocks or CloudMocks(project=stack_config.project, region=stack_config.region)
    try:
        run_result = run_under_mocks(lambda: run(observe=lambda r: observed.setdefault("resolved", r)),
                                     project=project_name(), stack=stack, config=engine_values(values),
                                     secret_keys=sorted(secret_keys), mocks=mocks)
    except StackCheckFailed as failure:
        result.checks = list(failure.checks)
        result.resolved = failure.resolved
        result.failed = True
        return result
    resolved = observed["resolved"]
    result.resolved = resolved
    result.checks = list(resolved.checks)
    result.run = run_result
    result.invented_tokens = frozenset(mocks.invented)
    result.resources = []
    for r in run_result.registrations:
        inputs = mask_secrets(r.inputs)
        result.resources.append({"type": r.type, "name": r.name, "parent": _parent_name(r.parent), "inputs": inputs,
                                 "options": dict(r.options), "invented": invented_paths(inputs, result.is_invented),
                                 "changes": change_kinds(r.type, dict(r.options))})
    result.outputs = {k: ("[secret]" if o.secret else mask_secrets(o.value)) for k, o in run_result.outputs.items()}
    result.invented_outputs = invented_paths(result.outputs, result.is_invented)
    # The policy pack, as `pulumi preview --policy-pack policies` would run it; mandatory policies.
    result.violations = run_policies(run_result.registrations, pack_config(stack))
    result.failed = bool(result.violations)
    if out_dir is not None:
        from offline.manifests import ManifestConflict, write_kubernetes_manifests

        try:
            result.manifests = write_kubernetes_manifests(run_result.registrations, out_dir)
        except ManifestConflict as conflict:
            result.checks.append(Check("", ERROR, str(conflict)))
            result.failed = True
    return result


def _parent_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1] if urn else ""


# ---------------------------------------------------------------------------
# Text rendering.


def _flatten(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        for k, v in value.items():
            items += _flatten(v, f"{path}.{k}" if path else str(k))
        return items
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = []
        for i, v in enumerate(value):
            items += _flatten(v, f"{path}[{i}]")
        return items
    return [(path, value)]


def _selected(resource: dict, verbose: bool) -> list[tuple[str, Any]]:
    pairs = _flatten(resource["inputs"])
    if verbose:
        return pairs
    wanted = KEY_INPUTS.get(resource["type"])
    if wanted is None and resource["type"].startswith("kubernetes:"):
        wanted = K8S_KEY_INPUTS
    if wanted is None:
        return [(p, v) for p, v in pairs if "." not in p and "[" not in p][:6]
    return [(p, v) for p, v in pairs if any(p == w or p.startswith(w + ".") or p.startswith(w + "[") for w in wanted)]


def _short(value: Any, limit: Optional[int] = 140) -> str:
    """A value on one line: cut at ``limit`` characters (whole with None)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # the wire format has only doubles
    # Strings print bare unless they span lines (curl examples): one line per value, always.
    text = value if isinstance(value, str) and "\n" not in value else json.dumps(value)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def _shown(result: PlanResult, value: Any, verbose: bool) -> str:
    text = _short(value, None if verbose else 140)
    invented = result.is_invented(value) or (isinstance(value, list) and any(result.is_invented(v) for v in value))
    return f"{text} {INVENTED_MARK}" if invented else text


def _options_text(options: dict[str, Any]) -> str:
    parts = []
    for name, value in options.items():
        if value is True:
            parts.append(name)
        elif isinstance(value, list):
            parts.append(f"{name}=[{', '.join(v if isinstance(v, str) else json.dumps(v) for v in value)}]")
        else:
            parts.append(f"{name}={value}")
    return ", ".join(parts)


def render_text(result: PlanResult, verbose: bool = False) -> str:
    lines = [f"Offline plan of stack {result.stack} ({result.source}) under Pulumi's mock engine: nothing is created.",
             f"Values the mock engine makes up (project number, URLs, digests, ids) are marked {INVENTED_MARK}.", ""]
    if result.resources:
        lines.append(f"Resources ({len(result.resources)}):")
        # Walk by URN: names are unique per type, not across types.
        registrations = result.run.registrations if result.run else []
        children: dict[str, list[tuple[dict, str]]] = {}
        for resource, registration in zip(result.resources, registrations, strict=False):
            children.setdefault(registration.parent, []).append((resource, registration.urn))

        def walk(parent: str, depth: int) -> None:
            for resource, urn in children.get(parent, []):
                lines.append(f"{'  ' * depth}+ {resource['type']}  {resource['name']}")
                if resource.get("options"):
                    lines.append(f"{'  ' * depth}    (options) {_options_text(resource['options'])}")
                for change in resource.get("changes", []):
                    lines.append(f"{'  ' * depth}    (on change) {change}")
                for path, value in _selected(resource, verbose):
                    lines.append(f"{'  ' * depth}    {path} = {_shown(result, value, verbose)}")
                walk(urn, depth + 1)

        walk("", 1)
        lines.append("")
    if result.outputs:
        lines.append("Outputs:")
        for path, value in _flatten(result.outputs):
            lines.append(f"  {path}: {_shown(result, value, verbose)}")
        lines.append("")
    lines.append("Checks:")
    if not result.checks:
        lines.append("  (none)")
    for check in sorted(result.checks, key=lambda c: ("error", "warning", "info").index(c.level)):
        lines.append(f"  {check.render()}")
    lines.append("")
    if result.run is not None:
        config_path = policy_config_path(result.stack)
        config_file = str(config_path.relative_to(ROOT))
        if not config_path.exists():
            config_file += " absent: the pack's own defaults"
        lines.append(f"Policy pack ({config_file}):")
        lines += [f"  VIOLATION {v.resource}: {v.render()}" for v in result.violations] or ["  no violations"]
        lines.append("")
    if result.resolved and result.resolved.deployments:
        lines += fit_table(result.resolved)
        lines += capacity_table_lines(result.resolved)
        lines += startup_table(result.resolved)
    if result.manifests:
        lines.append(f"Kubernetes manifests: {len(result.manifests)} files under {result.manifests[0].parent}")
    if result.failed:
        lines.append("")
        what = "The policy pack" if result.violations else "The checks above"
        lines.append(f"{what} would refuse this deploy: nothing would be created.")
    return "\n".join(lines)


def fit_rows(resolved: ResolvedStack) -> list[dict]:
    rows = []
    for name, d in resolved.deployments.items():
        price = _price(d)
        rows.append({
            "deployment": name,
            "platform": d.platform.value,
            "model": d.model.hf_id,
            "devices": d.hardware.label,
            "weights_gib_per_device": round(d.fit.weights_gib_per_device, 2),
            "kv_cache_dtype": d.vllm.kv_cache_dtype,
            "kv_capacity_tokens": d.fit.kv_capacity_tokens,
            "kv_capacity_tokens_fp8": d.fit.kv_capacity_tokens_fp8,
            "max_model_len": d.vllm.max_model_len,
            "largest_max_model_len": d.fit.largest_max_model_len,
            "sequences_at_max_model_len": round(d.fit.sequences_at_max_model_len, 1),
            "typical_request_tokens": d.fit.typical_request_tokens,
            "sequences_at_typical_length": round(d.fit.sequences_at_typical_length, 1),
            "max_num_seqs": d.fit.max_num_seqs,
            "max_num_seqs_set": d.vllm.max_num_seqs is not None,
            "usd_per_hour_min": None if price is None else round(price * d.scaling.min_replicas, 2),
            "usd_per_hour_max": None if price is None else round(price * d.scaling.max_replicas, 2),
        })
    return rows


def _price(d) -> Optional[float]:
    item = d.hardware.machine_type or f"cloudrun:{d.hardware.accelerator.cloudrun_gpu}"
    entry = CATALOG.price(item)
    return entry.usd_per_hour if entry else None


def capacity_rows(resolved: ResolvedStack) -> list[dict]:
    """GKE deployments: the order capacity is tried in, and $/h at min and max replicas for each type."""
    from stacks.catalog.capacity import capacity_prices

    gke = resolved.config.settings.gke
    table = capacity_prices()
    rows = []
    for name, d in resolved.deployments.items():
        if d.platform.value != "gke" or not d.hardware.machine_type:
            continue
        pool = gke.node_pools.get(d.hardware.node_pool or "") if gke is not None else None
        order = ([f"pool {d.hardware.node_pool} ({pool.own_capacity.value})", *(f.value for f in pool.fallbacks)]
                 if pool is not None else ["autopilot (on-demand)"])
        on_demand = CATALOG.price(d.hardware.machine_type)
        prices: dict[str, Optional[float]] = {"on-demand": on_demand.usd_per_hour if on_demand else None}
        notes: dict[str, str] = {}
        for capacity in ("spot", "flex-start"):
            entry = table.price(d.hardware.machine_type, capacity)
            prices[capacity] = entry.usd_per_hour if entry else None
            if entry and entry.note:
                notes[capacity] = entry.note
        # A reservation is billed whether or not it is used: its cost is the on-demand (or committed) price.
        rows.append({
            "deployment": name,
            "machine_type": d.hardware.machine_type,
            "capacity_order": order,
            "usd_per_hour": {capacity: None if price is None else {
                "min_replicas": round(price * d.scaling.min_replicas, 2),
                "max_replicas": round(price * d.scaling.max_replicas, 2)} for capacity, price in prices.items()},
            "notes": notes,
        })
    return rows


def capacity_table_lines(resolved: ResolvedStack) -> list[str]:
    from stacks.catalog.capacity import capacity_prices

    rows = capacity_rows(resolved)
    if not rows:
        return []
    out = [f"GKE capacity (tried in this order) and $/h at min-max replicas by capacity type (on-demand as of "
           f"{CATALOG.prices_as_of}; spot and flex-start as of {capacity_prices().as_of}, estimates: see "
           f"stacks/catalog/data/prices.yaml):"]
    for r in rows:
        cells = []
        for capacity, cost in r["usd_per_hour"].items():
            cells.append(f"{capacity} " + ("n/a" if cost is None else f"{cost['min_replicas']:.2f}-{cost['max_replicas']:.2f}"))
        out.append(f"  {r['deployment']:<10}  {' -> '.join(r['capacity_order'])}")
        out.append(f"  {'':<10}  {r['machine_type']}: " + "; ".join(cells))
    out.append("")
    return out


def fit_table(resolved: ResolvedStack) -> list[str]:
    header = ("deployment", "devices", "weights/dev", "KV tokens", "with fp8 KV", "max len", "largest len",
              "seqs@max len", "typical len", "seqs@typical", "max seqs", "$/h min", "$/h max")
    rows = [header]

    def money(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    for r in fit_rows(resolved):
        fp8 = "(in use)" if r["kv_cache_dtype"].startswith("fp8") else str(r["kv_capacity_tokens_fp8"])
        seqs = str(r["max_num_seqs"]) + ("" if r["max_num_seqs_set"] else " (vLLM)")
        rows.append((r["deployment"], r["devices"], f"{r['weights_gib_per_device']:.1f} GiB", str(r["kv_capacity_tokens"]),
                     fp8, str(r["max_model_len"]), str(r["largest_max_model_len"]),
                     f"{r['sequences_at_max_model_len']:.1f}", str(r["typical_request_tokens"]),
                     f"{r['sequences_at_typical_length']:.1f}", seqs, money(r["usd_per_hour_min"]),
                     money(r["usd_per_hour_max"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    out = [f"Fit (estimates; seqs@ = sequences whose KV fits at once; max seqs (vLLM) = vLLM's own default; "
           f"prices: on-demand list prices as of {CATALOG.prices_as_of}):"]
    for row in rows:
        out.append("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    out.append("")
    return out


def startup_rows(resolved: ResolvedStack) -> list[dict]:
    """Each deployment's startup budget and the arithmetic behind it (stacks/coldstart.py)."""
    rows = []
    for name, d in resolved.deployments.items():
        b = d.startup
        if b is None:
            continue
        rows.append({
            "deployment": name, "platform": b.platform_key, "weight_gb": round(b.weight_gb, 1),
            "load_gb_per_s": b.load_gb_per_s, "load_seconds": b.load_seconds, "compile_seconds": b.compile_seconds,
            "fixed_seconds": b.fixed_seconds, "safety_factor": b.safety_factor,
            "estimate_seconds": b.estimate_seconds, "limit_seconds": b.limit_seconds, "seconds": b.seconds,
            "source": b.source, "setting": b.setting_key,
            "compile_cache": (f"gs://{resolved.names.bucket}/{d.compile_cache.prefix}" if d.compile_cache else None),
        })
    return rows


def startup_table(resolved: ResolvedStack) -> list[str]:
    header = ("deployment", "platform", "weights", "load", "compile", "start", "x", "estimate", "limit", "budget",
              "from", "compile cache")
    rows = [header]
    for r in startup_rows(resolved):
        rows.append((r["deployment"], r["platform"], f"{r['weight_gb']:.1f} GB @ {r['load_gb_per_s']:g} GB/s",
                     f"{r['load_seconds']} s", f"{r['compile_seconds']} s", f"{r['fixed_seconds']} s",
                     f"{r['safety_factor']:g}", f"{r['estimate_seconds']} s", f"{r['limit_seconds']} s",
                     f"{r['seconds']} s", r["source"], r["compile_cache"] or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    out = ["Startup budgets (startup probe; Vertex AI: deployment timeout) = (start + weights / load rate + cold "
           "compile) x safety, capped at the platform's limit; figures and their basis in "
           "stacks/catalog/data/startup.yaml:"]
    for row in rows:
        out.append("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    out.append("")
    return out


# ---------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    return guarded(_main, argv, prog="offline.plan")


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", nargs="?", help="stack name: plans Pulumi.<stack>.yaml at the project root")
    parser.add_argument("--file", type=Path, help="plan this stack file instead")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--verbose", action="store_true", help="print every input of every resource, whole")
    parser.add_argument("--out", type=Path, help="where Kubernetes manifests go (default build/<stack>)")
    parser.add_argument("--environment-file", type=Path, action="append", default=[], metavar="PATH",
                        help="a Pulumi ESC environment definition whose values.pulumiConfig the stack imports "
                             "(repeatable, merged in order; default: environments/<project>/<env>.yaml for each "
                             "name under the stack file's `environment:`)")
    parser.add_argument(DEBUG_FLAG, action="store_true", help="print the traceback of an internal error")
    args = parser.parse_args(argv)
    if bool(args.stack) == bool(args.file):
        parser.error("give a stack name or --file PATH (one of them)")
    path = args.file or ROOT / f"Pulumi.{args.stack}.yaml"
    stack = args.stack or path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    if not path.is_file():
        print(f"{path}: no such stack file; stacks here: "
              f"{', '.join(sorted(p.name[7:-5] for p in ROOT.glob('Pulumi.*.yaml')))}", file=sys.stderr)
        return INVALID_INPUT
    try:
        values, secret_keys, source = read_stack_with_environments(path, project_name(), args.environment_file)
        result = plan(values, secret_keys, stack=stack, source=source, out_dir=args.out or ROOT / "build" / stack)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return INVALID_INPUT
    if args.json:
        print(json.dumps(result.as_json(), indent=2, default=str))
    else:
        print(render_text(result, verbose=args.verbose))
    return REFUSED if result.failed else OK


if __name__ == "__main__":
    sys.exit(main())
