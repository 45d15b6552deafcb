"""Run a Pulumi program under the mock engine and return what it registered and exported.

This is what the offline plan and the tests share: the real program code runs (resources,
components, ``apply`` chains, invokes), only the engine is replaced (``offline.mocks``).
Runs are not a preview (``preview=False``), so every ``apply`` executes and no assertion can
pass on an unknown value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from offline.mocks import CloudMocks, RecordingMonitor, Registration


@dataclass(frozen=True)
class StackOutput:
    value: Any
    secret: bool


@dataclass
class RunResult:
    registrations: list[Registration]
    outputs: dict[str, StackOutput]
    warnings: list[str] = field(default_factory=list)
    mocks: CloudMocks | None = None

    def of_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_token]

    def named(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        if len(matches) != 1:
            known = ", ".join(sorted(r.name for r in self.registrations))
            raise KeyError(f"expected one resource named {name!r}, found {len(matches)}; registered: {known}")
        return matches[0]

    def children_of(self, parent: Registration) -> list[Registration]:
        return [r for r in self.registrations if r.parent == parent.urn]


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_under_mocks(
    program: Callable[[], Any],
    *,
    project: str = "llm-serving",
    stack: str = "test",
    config: Mapping[str, Any] | None = None,
    secret_keys: list[str] | None = None,
    mocks: CloudMocks | None = None,
) -> RunResult:
    """Run ``program`` as the body of a Pulumi stack under mocks; raise what it raises."""
    mocks = mocks or CloudMocks()
    monitor = RecordingMonitor(mocks)
    logger = logging.getLogger(f"pulumi-mocks-{id(monitor)}")
    logger.propagate = False
    collector = _WarningCollector()
    logger.addHandler(collector)

    # A fresh root stack per run: the SDK keeps it in a context variable between runs.
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_all_config(dict(config or {}), list(secret_keys or []))
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, logger=logger, monitor=monitor)

    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.SETTINGS.outputs.clear()

    def body() -> None:
        program()

    _sync_await(run_pulumi_func(body))
    outputs = _collect_outputs()
    return RunResult(registrations=list(monitor.registrations), outputs=outputs,
                     warnings=list(collector.messages), mocks=mocks)


def _collect_outputs() -> dict[str, StackOutput]:
    root = pulumi.runtime.get_root_resource()
    exported: dict[str, Any] = getattr(root, "outputs", {}) or {}

    async def resolve() -> dict[str, StackOutput]:
        result = {}
        for key, value in exported.items():
            output = pulumi.Output.from_input(value)
            result[key] = StackOutput(value=await output.future(), secret=bool(await output.is_secret()))
        return result

    return _sync_await(resolve())
