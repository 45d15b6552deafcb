"""Pulumi ESC environments for the offline plan: their ``pulumiConfig`` read from local files and
merged into a stack's config exactly as Pulumi merges them.

A stack imports environments with ``environment:`` in ``Pulumi.<stack>.yaml`` (a list of names);
Pulumi then opens each environment and adds its ``values.pulumiConfig`` to the stack's config
before the program runs, so the program reads those values like any key of the stack file.
The rules, from Pulumi's documentation:

- environments are merged in the order listed, later values overriding earlier ones
  (https://www.pulumi.com/docs/esc/guides/pulumi-iac/, "How the integration works");
- a key set both in an environment's ``pulumiConfig`` and in the stack file takes the stack
  file's value; object values are deep-merged with JSON merge patch (RFC 7396), the stack's value
  winning for every key set in both (https://www.pulumi.com/docs/esc/concepts/outputs/,
  "pulumiConfig", "Precedence"); ``null`` unsets an inherited value
  (https://www.pulumi.com/docs/esc/concepts/imports/, "Precedence rules");
- a key without a namespace takes the project's name (https://www.pulumi.com/docs/iac/concepts/config/,
  "Configuration Keys");
- a value under ``fn::secret`` reaches the program as a Pulumi secret, exactly as if set with
  ``pulumi config set --secret`` (https://www.pulumi.com/docs/esc/guides/pulumi-iac/).

Offline there is no Pulumi Cloud to open an environment, so each one is read from a local file
holding its definition (what ``pulumi env get <org>/<project>/<env> --definition`` prints):
``environments/<project>/<env>.yaml`` next to the stack file, or the files given with
``--environment-file``. What only Pulumi Cloud can evaluate (``imports:``, ``${...}``
interpolation, providers such as ``fn::open::gcp-secrets``) is refused with the key path and
what to write instead. An encrypted secret (``fn::secret: {ciphertext: ...}``) cannot be
decrypted offline and becomes the same placeholder as a ``secure:`` stack value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offline.stackfile import OFFLINE_SECRET, read_stack_text
from stacks.schema import ConfigError, Problem

ENVIRONMENTS_DIR = "environments"
# An ESC environment name: `<project>/<env>` or a bare `<env>` (project `default`); an optional
# `@<version>` or tag (https://www.pulumi.com/docs/esc/concepts/versioning/) is ignored offline.
_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*){0,2}(@[\w.-]+)?$")
_INTERPOLATION = re.compile(r"\$\{[^}]*\}")


@dataclass(frozen=True)
class _Secret:
    """A leaf value that came in under ``fn::secret`` (kept whole through the merge)."""

    value: Any


@dataclass(frozen=True)
class Environment:
    """One environment's ``pulumiConfig``: full config keys -> values, secret leaves wrapped."""

    name: str
    path: Path
    config: dict[str, Any]


def stack_environment_names(document: Mapping[str, Any], source: str) -> list[str]:
    """The ``environment:`` list of a parsed stack file (names as written), or ConfigError."""
    listed = document.get("environment")
    if listed is None:
        return []
    if not isinstance(listed, list) or not all(isinstance(n, str) and _NAME.fullmatch(n) for n in listed):
        raise ConfigError(source, [Problem("environment", f"got {listed!r}; list ESC environment names, "
                                                          "e.g. `environment: [llm-serving/dev]`")])
    return list(listed)


def environment_path(stack_file: Path, name: str) -> Path:
    """Where the offline plan looks for environment ``name``: ``environments/<project>/<env>.yaml``
    next to the stack file (a bare ``<env>`` is in project ``default``; an org prefix and a
    ``@version`` are dropped: the local file is the version being planned)."""
    parts = name.split("@", 1)[0].split("/")
    project, env = (["default", *parts] if len(parts) == 1 else parts)[-2:]
    return stack_file.resolve().parent / ENVIRONMENTS_DIR / project / f"{env}.yaml"


def read_environment(path: Path, project: str, name: str | None = None) -> Environment:
    """The ``values.pulumiConfig`` of one environment definition file, or ConfigError naming it."""
    shown = str(path)
    if not path.is_file():
        raise ConfigError(shown, [Problem("whole file", "no such environment file; write the environment's "
                                                        "definition there (`pulumi env get <org>/<project>/<env> "
                                                        "--definition`), or pass --environment-file PATH")])
    _, document = read_stack_text(path, shown)
    problems: list[Problem] = []
    unknown = sorted(set(document) - {"imports", "values"})
    if unknown:
        problems.append(Problem(", ".join(unknown), "an environment definition has only `imports:` and `values:`"))
    if document.get("imports"):
        problems.append(Problem("imports", "imported environments cannot be opened offline; give each one as its "
                                           "own --environment-file, in the order Pulumi would merge them"))
    values = document.get("values") or {}
    if not isinstance(values, dict):
        problems.append(Problem("values", f"got {_short(values)}; `values:` is a map"))
        values = {}
    pulumi_config = values.get("pulumiConfig") or {}
    if not isinstance(pulumi_config, dict):
        problems.append(Problem("values.pulumiConfig", f"got {_short(pulumi_config)}; `pulumiConfig:` is a map of "
                                                       "config key: value"))
        pulumi_config = {}
    config: dict[str, Any] = {}
    for key, value in pulumi_config.items():
        where = f"values.pulumiConfig.{key}"
        if not isinstance(key, str) or not key or key.count(":") > 1:
            problems.append(Problem(where, "a config key is `namespace:name` or a bare name"))
            continue
        full_key = key if ":" in key else f"{project}:{key}"
        config[full_key] = _evaluate(value, where, problems)
    if problems:
        raise ConfigError(shown, problems)
    return Environment(name=name or path.stem, path=path, config=config)


def _evaluate(value: Any, where: str, problems: list[Problem]) -> Any:
    """A value as ESC would evaluate it, for the subset that needs no Pulumi Cloud."""
    if isinstance(value, dict):
        functions = [k for k in value if isinstance(k, str) and k.startswith("fn::")]
        if functions:
            if len(value) != 1 or functions != ["fn::secret"]:
                problems.append(Problem(where, f"{', '.join(functions)} cannot be evaluated offline (only `fn::secret` "
                                               "can); write the value itself in the local environment file"))
                return None
            inner = value["fn::secret"]
            if isinstance(inner, dict) and set(inner) == {"ciphertext"}:
                return _Secret(OFFLINE_SECRET)  # encrypted by Pulumi Cloud: unreadable here, like `secure:`
            if isinstance(inner, (dict, list)) or inner is None:
                problems.append(Problem(f"{where}.fn::secret", "a secret is one plain value (text or number)"))
                return None
            if isinstance(inner, str) and _INTERPOLATION.search(inner):
                problems.append(Problem(f"{where}.fn::secret", "`${...}` interpolation cannot be evaluated offline; "
                                                               "write the value itself"))
                return None
            return _Secret(inner)
        return {str(k): _evaluate(v, f"{where}.{k}", problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_evaluate(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, str) and _INTERPOLATION.search(value):
        problems.append(Problem(where, f"{value!r}: `${{...}}` interpolation cannot be evaluated offline; write "
                                       "the value itself in the local environment file"))
        return None
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: ``patch`` wins, objects merge key by key, ``null`` removes a key."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def apply_environments(values: Mapping[str, Any], secret_keys: set[str],
                       environments: Sequence[Environment]) -> tuple[dict[str, Any], set[str]]:
    """The stack's config after Pulumi adds its environments: environments in order, then the stack file on top.

    Returns the merged values (secrets unwrapped) and the keys that hold a secret anywhere inside:
    the stack file's secret keys and every key an environment's ``fn::secret`` reaches."""
    from_environments: dict[str, Any] = {}
    for environment in environments:
        from_environments = merge_patch(from_environments, environment.config)
    merged = merge_patch(from_environments, dict(values))
    out: dict[str, Any] = {}
    secret = set(k for k in secret_keys if k in merged)
    for key, value in merged.items():
        plain, had_secret = _unwrap(value)
        out[key] = plain
        if had_secret:
            secret.add(key)
    return out, secret


def _unwrap(value: Any) -> tuple[Any, bool]:
    if isinstance(value, _Secret):
        return value.value, True
    if isinstance(value, dict):
        pairs = {k: _unwrap(v) for k, v in value.items()}
        return {k: p[0] for k, p in pairs.items()}, any(p[1] for p in pairs.values())
    if isinstance(value, list):
        items = [_unwrap(v) for v in value]
        return [p[0] for p in items], any(p[1] for p in items)
    return value, False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_stack_with_environments(stack_file: Path, project: str, environment_files: Sequence[Path] = ()
                                 ) -> tuple[dict[str, Any], set[str], str]:
    """A stack file's config with its environments merged in, its secret keys, and the source to name.

    ``environment_files`` replaces the stack's own ``environment:`` lookup when given. The source
    names the stack file and, when any applied, the environment files, so a bad value is looked
    for in both."""
    from offline.stackfile import config_values

    _, document = read_stack_text(stack_file, stack_file.name)
    values, secret_keys = config_values(document, stack_file.name)
    if environment_files:
        environments = [read_environment(Path(p), project) for p in environment_files]
    else:
        environments = [read_environment(environment_path(stack_file, name), project, name)
                        for name in stack_environment_names(document, stack_file.name)]
    if not environments:
        return values, secret_keys, stack_file.name
    merged, merged_secrets = apply_environments(values, secret_keys, environments)
    shown = ", ".join(_relative(e.path, stack_file) for e in environments)
    return merged, merged_secrets, f"{stack_file.name} with environment {shown}"


def _relative(path: Path, stack_file: Path) -> str:
    try:
        return str(path.resolve().relative_to(stack_file.resolve().parent))
    except ValueError:
        return str(path)
