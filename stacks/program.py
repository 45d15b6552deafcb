"""The Pulumi program: read this stack's config, check it, compose it, export its outputs.

``__main__.py`` calls ``run()``; so does the offline plan, under the mock engine.
"""

from __future__ import annotations

import dataclasses
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import pulumi
from pulumi.runtime import config as runtime_config

from stacks import compose
from stacks.config import HF_TOKEN_KEY, StackConfig, load
from stacks.findings import ERROR, INFO, WARNING, Check, PreviewCheckError, internal_error_line, without_tokens
from stacks.resolve import resolve_stack
from stacks.resolved import ResolvedStack
from stacks.schema import NAMESPACE, ConfigError

COMPONENTS_DIR = Path(compose.__file__).resolve().parent.parent / "components"


class StackCheckFailed(pulumi.RunError):
    """The stack's config or a preview-time check refused the deploy; nothing was registered.

    A ``RunError`` makes Pulumi print just the message: the list of problems, no traceback."""

    def __init__(self, message: str, checks: list[Check], resolved: Optional[ResolvedStack] = None):
        super().__init__(message)
        self.checks = checks
        self.resolved = resolved


class ComponentRefused(StackCheckFailed):
    """A component's own argument check refused a value the config checks let through.

    The deploy is refused like a failed preview check, with the component's message (which names
    the value and what it accepts); the gap in the config checks is worth reporting."""

    def __init__(self, source: str, error: ValueError):
        message = (f"{source}: a resource refused a value from this stack file: "
                   f"{without_tokens(' '.join(str(error).split()))}. "
                   "Fix that value; the config checks should have caught it, so please report it too")
        super().__init__(message, [Check("", ERROR, message)])


# Set to 1 to let an internal error reach the engine with its traceback (`LLM_SERVING_DEBUG=1 pulumi preview`).
DEBUG_ENV = "LLM_SERVING_DEBUG"


class ProgramBug(pulumi.RunError):
    """An exception no config rule or check anticipated: a bug, reported as one line.

    ``pulumi preview`` prints a ``RunError`` as its message alone; ``original`` keeps the bug for
    the offline plan, which prints its traceback with ``--debug``."""

    def __init__(self, original: BaseException):
        super().__init__(internal_error_line(original, f"set {DEBUG_ENV}=1 and rerun for the traceback"))
        self.original = original


def runtime_values() -> tuple[dict[str, Any], set[str]]:
    """Every config value the engine passed to this program, and which of them are secrets."""
    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    return values, secret_keys


def load_stack() -> StackConfig:
    values, secret_keys = runtime_values()
    stack = pulumi.get_stack()
    return load(values, secret_keys, source=f"Pulumi.{stack}.yaml", stack=stack)


def check(stack: StackConfig) -> ResolvedStack:
    """Resolve and run every preview-time check, quota included; raise on any error."""
    resolved = resolve_stack(stack)
    checks = list(resolved.checks)
    if stack.settings.check_quota and not any(c.level == ERROR for c in checks):
        checks += compose.quota_checks(resolved)
    resolved = dataclasses.replace(resolved, checks=tuple(checks))
    for item in checks:
        if item.level == WARNING:
            pulumi.log.warn(item.render())
        elif item.level == INFO:
            pulumi.log.info(item.render())
    errors = [c for c in checks if c.level == ERROR]
    if errors:
        raise StackCheckFailed(str(PreviewCheckError(stack.source, errors)), checks, resolved)
    return resolved


def run(observe: Optional[Callable[[ResolvedStack], Any]] = None) -> None:
    """The program. Bad config and failed checks end it with their message (``StackCheckFailed``);
    any other exception with one line saying it is a bug (``ProgramBug``); never a traceback,
    unless LLM_SERVING_DEBUG=1."""
    try:
        _run(observe)
    except pulumi.RunError:
        raise
    except Exception as error:  # noqa: BLE001 - a bug becomes one clean message
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        raise ProgramBug(error) from error


def _run(observe: Optional[Callable[[ResolvedStack], Any]]) -> None:
    try:
        stack = load_stack()
    except ConfigError as error:
        raise StackCheckFailed(str(error), []) from None
    resolved = check(stack)
    if observe is not None:
        observe(resolved)
    token = pulumi.Config(NAMESPACE).get_secret("hfToken") if HF_TOKEN_KEY in runtime_values()[0] else None
    try:
        outputs = compose.build(resolved, token)
    except ValueError as error:
        if not _raised_by_a_component(error):
            raise
        raise ComponentRefused(stack.source, error) from error
    for key, value in outputs.items():
        pulumi.export(key, value)


def _raised_by_a_component(error: BaseException) -> bool:
    """Was this raised by a component's own argument check (the innermost frame is in components/)?"""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().parent == COMPONENTS_DIR
