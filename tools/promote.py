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

Formatting: only the changed values of the target are rewritten, through a round-trip YAML
library (ruamel.yaml), so comments (anywhere), key order, quoting, flow style and line endings
(LF or CRLF) are kept; keys new to a deployment are placed after the key they follow in the
source. Both files are read with the project's stack-file reader first, so duplicate keys,
syntax errors and the like refuse the promotion (exit 2) before anything is merged.

Writing cannot lose the file: the new text goes to a temporary file in the same folder, is
flushed to disk (fsync), takes the old file's permissions and then replaces it in one rename;
if anything fails before the rename, the old file is untouched.

Exit status: 0 promoted (or nothing to change, or --dry-run); 1 refused, or the file could not
be written (it is then unchanged); 2 bad arguments, a missing or unreadable stack file; 3 an
internal error (``--debug`` prints the traceback).
"""

from __future__ import annotations

import argparse
import copy
import difflib
import io
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from offline.cli import guarded
from offline.plan import ROOT, plan, read_stack_file
from offline.stackfile import StackFileError, read_stack_text
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
    "llm-serving:monitoring",   # who is paged and how strict each environment's alerts are
    # Per deployment: capacity and access, sized for each environment's traffic and budget.
    "deployments.*.hardware",   # machine type / accelerators / node pool (exists per env)
    "deployments.*.scaling",    # replicas and autoscaling targets
    "deployments.*.labels",
    "deployments.*.typicalRequestTokens",  # the traffic each environment sees (plan's concurrency figure)
    "deployments.*.vertex",     # dedicated endpoint, spot, timeouts
    "deployments.*.cloudrun",   # invokers, ingress, zonal redundancy, concurrency (not weights)
    "deployments.*.gke",        # namespace, load balancer exposure, timeouts
    "deployments.*.alerts",     # alert thresholds sized for each environment
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
# YAML text: round trip and atomic write.


def _round_trip() -> YAML:
    """ruamel.yaml set up the way `pulumi config set` writes stack files (sequences under their key)."""
    yaml_rt = YAML(typ="rt")
    yaml_rt.preserve_quotes = True
    yaml_rt.indent(mapping=2, sequence=4, offset=2)
    yaml_rt.width = 1 << 20  # never wrap a long value
    return yaml_rt


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _sync(node: CommentedMap, want: dict) -> None:
    """Make the round-trip map ``node`` equal ``want``, touching only what differs, so comments,
    quoting and order of everything else stay as they were."""
    for key in [k for k in node if k not in want]:
        del node[key]
    previous: Optional[str] = None
    for key, value in want.items():
        if key not in node:
            keys = list(node)
            position = keys.index(previous) + 1 if previous in keys else 0
            node.insert(position, key, copy.deepcopy(value))
        elif isinstance(node[key], CommentedMap) and isinstance(value, dict):
            _sync(node[key], value)
        elif _plain(node[key]) != value:
            node[key] = copy.deepcopy(value)
        previous = key


def render_promoted(target_text: str, deployments: dict) -> str:
    """The target's text with ``llm-serving:deployments`` made equal to ``deployments``."""
    yaml_rt = _round_trip()
    document = yaml_rt.load(target_text)
    config = document["config"]
    if DEPLOYMENTS_KEY in config and isinstance(config[DEPLOYMENTS_KEY], CommentedMap):
        _sync(config[DEPLOYMENTS_KEY], deployments)
    else:
        config[DEPLOYMENTS_KEY] = copy.deepcopy(deployments)
    buffer = io.StringIO()
    yaml_rt.dump(document, buffer)
    text = buffer.getvalue()
    if "\r\n" in target_text:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return text


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash or a full disk leaves either the old file or
    the new one, never a cut one: temporary file in the same folder, fsync, same permissions,
    one rename, then fsync of the folder so the rename itself is on disk."""
    path = Path(path)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


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
        _drop_adopted_endpoint(name, merged, source_stack, notes)
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
        _drop_adopted_endpoint(name, merged[name], source_stack, notes)
    return merged, added, (removed if allow_removal else []), notes, reasons


def _drop_adopted_endpoint(name: str, deployment: dict, source_stack: str, notes: list[str]) -> None:
    """An adopted endpoint (vertex.existingEndpoint) belongs to the source environment: never copy it."""
    vertex = deployment.get("vertex")
    if isinstance(vertex, dict) and "existingEndpoint" in vertex:
        del vertex["existingEndpoint"]
        if not vertex:
            del deployment["vertex"]
        notes.append(f"deployment {name}: vertex.existingEndpoint is an endpoint of {source_stack}, not copied; "
                     "the target deploys its own endpoint")


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
    except StackFileError:
        raise  # not a stack file at all: invalid input, not a refusal
    except ConfigError as error:
        return [f"{label}: {problem.render()}" for problem in error.problems] or [f"{label}: {error}"]
    errors = [f"{label}: {check.render()}" for check in result.checks if check.level == "error"]
    # Policy-pack findings are not promotion errors: the pull request's preview runs the pack.
    if result.failed and not errors and not result.violations:
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

    _, source_document = read_stack_text(source)
    target_text, target_document = read_stack_text(target)
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

    if merged == old:
        return PromotionResult(target_text, "", added, removed, [], notes)
    new_text = render_promoted(target_text, merged)

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
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 2
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
            try:
                write_atomically(target, result.new_text)
            except OSError as error:
                print(f"could not write {target} ({error.strerror or error}); it is unchanged", file=sys.stderr)
                return 1
            print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
