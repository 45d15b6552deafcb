"""Promote a release from one stack file to the next: dev -> staging -> prod.

    python -m tools.promote dev staging              # prints the diff and writes Pulumi.staging.yaml
    python -m tools.promote staging prod --dry-run   # prints the diff only
    python -m tools.promote dev staging --allow-removal

A *release* is what was proven in the source environment: which model (and revision) runs in
which image with which vLLM settings. Those keys (``RELEASE_KEYS``) are copied for every
deployment. Everything that describes the *environment* (project, region, sizes, replicas,
who may call it; ``ENVIRONMENT_KEYS``) stays as the target file has it. Only the
``llm-serving:deployments`` key of the target is rewritten; every other stack-level key and
every top-level key of the file (``encryptionsalt``, ``secretsprovider``...) is left as is.

- A deployment only in the source is added: release keys plus the source's environment keys
  as a starting point, reported as ``review: copied from <source>``. The same happens to
  ``hardware`` and the platform-options section when a deployment changes platform, since the
  target's old ones do not apply to the new platform.
- A deployment only in the target would be deleted: refused unless ``allow_removal``.
- The source must plan cleanly (``offline.plan.plan``: no error-level check, no config error),
  and so must the promoted target content; otherwise nothing is written.
- Secure values (``{secure: ...}``) are encrypted per stack. A target release value holding one
  is left untouched (and reported); a source release value holding one cannot be copied and
  the promotion is refused (set it in the target with ``pulumi config set --secret``).

Formatting: the target is re-serialised with PyYAML (``safe_load`` then ``safe_dump`` with
``sort_keys=False``, 2-space indentation, sequences indented under their key, no line
wrapping). Key order is kept, and keys new to a deployment are placed after the key they follow
in the source. The file's leading comment block is re-attached verbatim. NOT preserved:
comments anywhere after that leading block (whole-line or end-of-line; they are listed in the
notes before they are dropped), flow style (``{a: 1}`` becomes block style), quoting style
(quotes are kept only where YAML needs them), anchors/aliases (expanded), blank lines inside
the document, and scalar spellings (``yes``/``0x10``/``1e3`` become ``true``/``16``/``1000.0``).
Files written by ``pulumi config set`` already have this shape, so in practice the diff shows
only the promoted values.

Exit status: 0 promoted (or nothing to change, or --dry-run); 1 refused; 2 bad arguments or a
missing stack file.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from offline.cli import guarded
from offline.plan import ROOT, plan, read_stack_file
from stacks.schema import ConfigError

DEPLOYMENTS_KEY = "llm-serving:deployments"

# Paths inside each deployment (``llm-serving:deployments.<name>.<path>``) that make up a
# release and are copied from the source stack.
RELEASE_KEYS: tuple[str, ...] = (
    # The thing that was tested: changing any of these changes what answers a request.
    "model",          # the Hugging Face model id
    "modelRevision",  # the exact weights commit; promoting "model" without it would float
    "image",          # the serving image (tag or digest) built/pinned once, promoted as-is
    "vllmVersion",    # describes `image`; must travel with it or the flag/metric checks lie
    "customModel",    # architecture facts of `model`; same lifetime as the model
    # Where it runs: the code path (container contract, health routes, args) differs per
    # platform, so a platform move is part of the release and must be proven first.
    "platform",
    # Server behaviour (context length, dtypes, batching, flags): tuned and validated together
    # with the image and model, so the whole section moves as one unit.
    "vllm",
    # Adapters served next to the model (names clients call, ranks); part of the API surface.
    "lora",
    # How Cloud Run gets the weights (baked into the image, bucket, hub) changes the image that
    # is built and the start-up path, so it is proven with the release.
    "cloudrun.weights",
)

# What stays as the target has it. Stack-level keys are written as in the stack file; keys
# starting with "deployments.*." are paths inside each deployment. A more specific release
# key wins over an environment section that contains it (cloudrun.weights inside cloudrun).
ENVIRONMENT_KEYS: tuple[str, ...] = (
    # Identity of the environment: where it lives and what it is called.
    "gcp:project", "gcp:region", "gcp:zone",
    "llm-serving:environment",  # drives protections (prod protects stateful resources)
    "llm-serving:namePrefix",
    "llm-serving:labels",       # cost centre, team: billing and ownership per environment
    # Credentials are per environment and encrypted per stack.
    "llm-serving:hfToken", "llm-serving:hfTokenSecret",
    # Per-environment infrastructure and guardrails.
    "llm-serving:bucket",       # forceDestroy is allowed in dev only
    "llm-serving:registry",
    "llm-serving:access",       # whether public invokers are allowed at all
    "llm-serving:checkQuota",
    "llm-serving:gke",          # cluster, node pools: machine sizes and node counts
    # Per deployment: capacity and access, sized for each environment's traffic and budget.
    "deployments.*.hardware",   # machine type / accelerators / node pool (exists per env)
    "deployments.*.scaling",    # replicas and autoscaling targets
    "deployments.*.labels",
    "deployments.*.typicalRequestTokens",  # the traffic each environment sees (plan's concurrency figure)
    "deployments.*.vertex",     # dedicated endpoint, spot, timeouts
    "deployments.*.cloudrun",   # invokers, ingress, zonal redundancy, concurrency (not weights)
    "deployments.*.gke",        # namespace, load balancer exposure, timeouts
)

_DEPLOYMENT_PREFIX = "deployments.*."
# Deployment sections that only apply to one platform (DeploymentConfig.validate).
_PLATFORM_SECTIONS = ("vertex", "cloudrun", "gke")


class PromotionRefused(Exception):
    """The promotion would be unsafe; nothing was written."""

    def __init__(self, reasons: list[str]):
        self.reasons = list(reasons)
        super().__init__("promotion refused:\n" + "\n".join(f"  - {r}" for r in self.reasons))


@dataclass
class PromotionResult:
    new_text: str
    diff: str  # unified diff of the target file; empty when nothing changes
    added: list[str]  # deployments new to the target
    removed: list[str]  # deployments dropped from the target (allow_removal)
    changed_keys: list[str]  # `pulumi config set --path` paths of changed leaves in kept deployments
    notes: list[str] = field(default_factory=list)  # things to review (copied settings, dropped comments)


# ---------------------------------------------------------------------------
# YAML text.


class _Dumper(yaml.SafeDumper):
    """Indent sequences under their key, the way `pulumi config set` writes stack files."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        return super().increase_indent(flow, False)


def dump_yaml(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=1 << 20, indent=2)


def split_header(text: str) -> tuple[str, str]:
    """The leading block of comment (and blank) lines, and the rest."""
    lines = text.splitlines(keepends=True)
    index = 0
    while index < len(lines) and (lines[index].lstrip().startswith("#") or not lines[index].strip()):
        index += 1
    return "".join(lines[:index]), "".join(lines[index:])


def _dropped_comments(body: str, header_lines: int) -> list[str]:
    """Comments after the leading block, which a re-serialised file cannot keep (best effort)."""
    found = []
    for number, line in enumerate(body.splitlines(), start=header_lines + 1):
        stripped = line.strip()
        if stripped.startswith("#") or re.search(r"\s#\s", line):
            found.append(f"line {number}: {stripped}")
    return found


# ---------------------------------------------------------------------------
# Merging.


def _has_secure(value: Any) -> bool:
    if isinstance(value, dict):
        return set(value) == {"secure"} or any(_has_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secure(v) for v in value)
    return False


def _get(mapping: dict, path: str) -> tuple[bool, Any]:
    node: Any = mapping
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _insert_after(items: list[tuple[str, Any]], key: str, value: Any, source_order: list[str]) -> None:
    """Insert (key, value) after the nearest key that precedes `key` in the source's order."""
    present = [k for k, _ in items]
    before = source_order[: source_order.index(key)] if key in source_order else []
    for previous in reversed(before):
        if previous in present:
            items.insert(present.index(previous) + 1, (key, value))
            return
    items.insert(0, (key, value))


def _set_path(target: dict, source: dict, path: str, present: bool, value: Any) -> dict:
    """A copy of `target` with `path` set to `value` (or removed when not `present`)."""
    head, _, rest = path.partition(".")
    items = list(target.items())
    keys = [k for k, _ in items]
    if rest:
        inner_target = target.get(head)
        inner_target = inner_target if isinstance(inner_target, dict) else {}
        inner_source = source.get(head)
        inner_source = inner_source if isinstance(inner_source, dict) else {}
        if not present and head not in target:
            return dict(items)
        new_inner = _set_path(inner_target, inner_source, rest, present, value)
        if head in keys:
            if new_inner:
                items[keys.index(head)] = (head, new_inner)
            else:
                del items[keys.index(head)]  # an emptied section goes away with its last key
        elif new_inner:
            _insert_after(items, head, new_inner, list(source))
        return dict(items)
    if not present:
        return {k: v for k, v in items if k != head}
    if head in keys:
        items[keys.index(head)] = (head, copy.deepcopy(value))
    else:
        _insert_after(items, head, copy.deepcopy(value), list(source))
    return dict(items)


def _environment_paths() -> list[str]:
    return [k[len(_DEPLOYMENT_PREFIX):] for k in ENVIRONMENT_KEYS if k.startswith(_DEPLOYMENT_PREFIX)]


def _merge_deployment(name: str, source: dict, target: dict, source_stack: str,
                      reasons: list[str], notes: list[str]) -> dict:
    merged = copy.deepcopy(target)
    platform_changed = source.get("platform") != target.get("platform")
    if platform_changed:
        # The target's hardware and platform options describe the old platform: start from the
        # source's for the new one, and keep replicas, labels and anything else environmental.
        for section in _PLATFORM_SECTIONS:
            merged.pop(section, None)
        merged.pop("hardware", None)
        copied = []
        for key in ("hardware", source.get("platform")):
            if isinstance(key, str) and key in source:
                merged = _set_path(merged, source, key, True, source[key])
                copied.append(key)
        notes.append(f"review: deployment {name} moves from platform {target.get('platform')} to "
                     f"{source.get('platform')}; {', '.join(copied) or 'no platform settings'} copied from "
                     f"{source_stack}, the target's old hardware and platform options dropped")
    for path in RELEASE_KEYS:
        present, value = _get(source, path)
        had, old = _get(target, path)
        if present and _has_secure(value):
            reasons.append(f"deployment {name}: {path} is a secret in {source_stack}; secrets are encrypted per "
                           f"stack and cannot be copied, set it in the target with `pulumi config set --secret`")
            continue
        if had and _has_secure(old):
            notes.append(f"deployment {name}: {path} holds a secure value in the target; left untouched")
            continue
        merged = _set_path(merged, source, path, present, value)
    return merged


def merge_deployments(source: dict, target: dict, *, source_stack: str, allow_removal: bool,
                      only: Optional[set[str]] = None) -> tuple[dict, list[str], list[str], list[str], list[str]]:
    """(merged deployments, added, removed, notes, refusal reasons).

    With ``only``, just those deployments are promoted; the target's others stay as they are
    (a cheap dev stack need not carry every prod deployment)."""
    reasons: list[str] = []
    notes: list[str] = []
    in_scope = (lambda name: True) if only is None else (lambda name: name in only)
    for name in sorted(only or ()):
        if name not in source:
            reasons.append(f"--only {name}: {source_stack} has no deployment {name}; it has {', '.join(source) or 'none'}")
    source = {name: value for name, value in source.items() if in_scope(name)}
    removed = [name for name in target if name not in source and in_scope(name)]
    if removed and not allow_removal:
        for name in removed:
            reasons.append(f"deployment {name} is in the target but not in {source_stack}; promoting would "
                           f"delete it (and its endpoint). Add it to {source_stack} or pass --allow-removal")
    merged: dict = {}
    for name, target_deployment in target.items():
        if name in source:
            merged[name] = _merge_deployment(name, source[name] or {}, target_deployment or {}, source_stack,
                                             reasons, notes)
        elif not allow_removal or name not in removed:
            merged[name] = copy.deepcopy(target_deployment)
    added = [name for name in source if name not in target]
    environment = _environment_paths()
    for name in added:
        deployment = source[name] or {}
        if _has_secure(deployment):
            reasons.append(f"deployment {name} holds a secret in {source_stack}; secrets are encrypted per stack "
                           f"and cannot be copied, add it to the target by hand")
            continue
        merged[name] = copy.deepcopy(deployment)
        copied = [k for k in environment if k in deployment]
        notes.append(f"review: deployment {name} is new; {', '.join(copied) or 'its settings'} copied from "
                     f"{source_stack}")
    return merged, added, (removed if allow_removal else []), notes, reasons


def _leaf_paths(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, dict) and value and set(value) != {"secure"}:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_leaf_paths(v, f"{path}.{k}"))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(_leaf_paths(v, f"{path}[{i}]"))
        return out
    return {path: value}


def _changed_keys(old: dict, new: dict) -> list[str]:
    changed = []
    for name in new:
        if name not in old:
            continue
        before = _leaf_paths(old[name] or {}, f"{DEPLOYMENTS_KEY}.{name}")
        after = _leaf_paths(new[name] or {}, f"{DEPLOYMENTS_KEY}.{name}")
        for path in list(after) + [p for p in before if p not in after]:
            if before.get(path, _ABSENT) != after.get(path, _ABSENT):
                changed.append(path)
    return changed


_ABSENT = object()


def _foreign_project_notes(deployments: dict, source_project: str, target_project: str, source_stack: str) -> list[str]:
    """Images pulled from the source environment's project need cross-project read access."""
    if not source_project or source_project == target_project:
        return []
    notes = []
    for name, deployment in deployments.items():
        image = (deployment or {}).get("image")
        if isinstance(image, str) and re.search(rf"(^|[/.]){re.escape(source_project)}/", image):
            notes.append(f"review: deployment {name} image {image} lives in {source_stack}'s project "
                         f"{source_project}; the target's runtime needs read access to it, or copy the image "
                         f"into the target's registry and promote by digest")
    return notes


# ---------------------------------------------------------------------------
# Planning.


def _stack_name(path: Path) -> str:
    return path.name.removeprefix("Pulumi.").removesuffix(".yaml")


def check_stack_file(path: Path, *, label: str, stack: Optional[str] = None) -> list[str]:
    """Reasons the stack file would not deploy: config problems and error-level checks."""
    try:
        values, secret_keys = read_stack_file(path)
        result = plan(values, secret_keys, stack=stack or _stack_name(path), source=path.name)
    except ConfigError as error:
        return [f"{label}: {problem.render()}" for problem in error.problems] or [f"{label}: {error}"]
    errors = [f"{label}: {check.render()}" for check in result.checks if check.level == "error"]
    if result.failed and not errors:
        errors.append(f"{label}: the plan failed")
    return errors


def _check_text(text: str, *, label: str, stack: str, name: str) -> list[str]:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / name
        path.write_text(text, encoding="utf-8")
        return check_stack_file(path, label=label, stack=stack)


# ---------------------------------------------------------------------------
# API.


def promote(source: Path, target: Path, *, allow_removal: bool = False,
            only: Optional[list[str]] = None) -> PromotionResult:
    """Compute the promoted target file. Writes nothing; raises PromotionRefused."""
    source, target = Path(source), Path(target)
    source_stack, target_stack = _stack_name(source), _stack_name(target)
    reasons = check_stack_file(source, label=f"source {source.name}")
    if reasons:
        raise PromotionRefused([f"{source.name} does not pass its checks; fix it before promoting it"] + reasons)

    source_document = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    target_text = target.read_text(encoding="utf-8")
    target_document = yaml.safe_load(target_text) or {}
    source_config = source_document.get("config") or {}
    target_config = target_document.get("config")
    if not isinstance(target_config, dict):
        raise PromotionRefused([f"{target.name} has no `config:` mapping"])
    old = target_config.get(DEPLOYMENTS_KEY) or {}
    merged, added, removed, notes, reasons = merge_deployments(
        source_config.get(DEPLOYMENTS_KEY) or {}, old, source_stack=source_stack, allow_removal=allow_removal,
        only=set(only) if only else None)
    if reasons:
        raise PromotionRefused(reasons)
    notes += _foreign_project_notes(merged, str(source_config.get("gcp:project") or ""),
                                    str(target_config.get("gcp:project") or ""), source_stack)

    header, body = split_header(target_text)
    if merged == old:
        return PromotionResult(target_text, "", added, removed, [], notes)
    new_document = copy.deepcopy(target_document)
    if DEPLOYMENTS_KEY in new_document["config"] or merged:
        new_document["config"][DEPLOYMENTS_KEY] = merged
    new_text = header + dump_yaml(new_document)
    dropped = _dropped_comments(body, header.count("\n"))
    notes += [f"comment not kept ({target.name} {line})" for line in dropped]

    target_errors = _check_text(new_text, label=f"promoted {target.name}", stack=target_stack, name=target.name)
    if target_errors:
        raise PromotionRefused([f"the promoted {target.name} would not pass its checks; nothing written"]
                               + target_errors)
    diff = "".join(difflib.unified_diff(target_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        fromfile=f"a/{target.name}", tofile=f"b/{target.name}"))
    return PromotionResult(new_text, diff, added, removed, _changed_keys(old, merged), notes)


def main(argv: Optional[list[str]] = None) -> int:
    return guarded(_main, argv, prog="tools.promote")


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.promote", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", metavar="from", help="stack to promote from, e.g. dev")
    parser.add_argument("target", metavar="to", help="stack to promote to, e.g. staging")
    parser.add_argument("--allow-removal", action="store_true",
                        help="delete deployments the target has and the source does not")
    parser.add_argument("--only", action="append", metavar="DEPLOYMENT",
                        help="promote just this deployment (repeatable); the target's others are left as they are")
    parser.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    parser.add_argument("--root", type=Path, default=ROOT, help="directory holding the Pulumi.<stack>.yaml files")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    args = parser.parse_args(argv)
    if args.source == args.target:
        parser.error("give two different stacks")
    paths = {name: args.root / f"Pulumi.{name}.yaml" for name in (args.source, args.target)}
    for path in paths.values():
        if not path.is_file():
            stacks = ", ".join(sorted(p.name[len("Pulumi."):-len(".yaml")] for p in args.root.glob("Pulumi.*.yaml")))
            print(f"{path}: no such stack file; stacks here: {stacks or '(none)'}", file=sys.stderr)
            return 2
    source, target = paths[args.source], paths[args.target]
    try:
        result = promote(source, target, allow_removal=args.allow_removal, only=args.only)
    except PromotionRefused as refused:
        print(f"refused: promoting {args.source} to {args.target}; {target.name} is unchanged", file=sys.stderr)
        for reason in refused.reasons:
            print(f"  - {reason}", file=sys.stderr)
        return 1
    if not result.diff:
        print(f"{target.name} already carries the {args.source} release: nothing to change")
    else:
        sys.stdout.write(result.diff)
        if not result.diff.endswith("\n"):
            sys.stdout.write("\n")
    for name in result.added:
        print(f"added deployment {name}")
    for name in result.removed:
        print(f"removed deployment {name}")
    for note in result.notes:
        print(note)
    if result.diff:
        if args.dry_run:
            print(f"dry run: {target.name} not written")
        else:
            target.write_text(result.new_text, encoding="utf-8")
            print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
