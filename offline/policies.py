"""The policy pack run offline against a run's registrations, as `pulumi preview --policy-pack`
would run it, without the Pulumi CLI.

Every registration of the mock engine becomes a ``PolicyResource`` (wire-format inputs, read-only
proxies as at run time; secret values masked, so a secret never counts as a plain value); each
resource policy's ``validate`` is called on each resource, each stack policy once on all of them,
with the environment's pack config (``policies/config/<stack>.json``). Component resources are
skipped: the engine does not send them to policies either.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

from offline.mocks import Registration, mask_secrets
from policies.guardrails import POLICIES

CONFIG_DIR = Path(__file__).resolve().parents[1] / "policies" / "config"


@dataclass(frozen=True)
class Violation:
    policy: str
    resource: str  # name of the resource, "" for a stack-wide finding
    message: str

    def render(self) -> str:
        return f"[{self.policy}] {self.message}"


def policy_config_path(stack: str) -> Path:
    """The stack's pack config, as the workflows pass it (`policyPackConfigs`)."""
    return CONFIG_DIR / f"{stack}.json"


def pack_config(stack: str) -> dict[str, Any]:
    path = policy_config_path(stack)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _is_component(registration: Registration) -> bool:
    return not registration.custom and not registration.type.startswith("pulumi:providers:")


def _options(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def run_policies(registrations: Iterable[Registration], config: Mapping[str, Mapping[str, Any]],
                 policies: Optional[list] = None) -> list[Violation]:
    """Every violation the pack reports for these registrations."""
    registrations = [r for r in registrations if not _is_component(r)]
    providers: dict[str, PolicyProviderResource] = {}
    for r in registrations:
        if r.type.startswith("pulumi:providers:"):
            props = unknown_checking_proxy(mask_secrets(dict(r.inputs)))
            # Provider references are "<urn>::<id>"; match on the URN.
            providers[r.urn] = PolicyProviderResource(r.type, props, r.urn, r.name)

    def provider_of(r: Registration) -> Optional[PolicyProviderResource]:
        return providers.get((r.provider or "").rsplit("::", 1)[0]) if r.provider else None

    resources = [PolicyResource(r.type, unknown_checking_proxy(mask_secrets(dict(r.inputs))), r.urn, r.name,
                                _options(), provider_of(r), None, [], {})
                 for r in registrations if not r.type.startswith("pulumi:providers:")]
    names = {res.urn: res.name for res in resources}
    found: list[Violation] = []

    def reporter(policy_name: str, default_resource: str) -> Callable[..., None]:
        """A ReportViolation that records the policy and the resource the violation names."""
        def report(message: str, urn: Optional[str] = None) -> None:
            found.append(Violation(policy_name, names.get(urn or "", default_resource), message))
        return report

    for policy in policies if policies is not None else POLICIES:
        policy_config = dict(config.get(policy.name) or {})
        if isinstance(policy, ResourceValidationPolicy):
            for res in resources:
                args = ResourceValidationArgs(res.resource_type, res.props, res.urn, res.name, res.opts,
                                              res.provider, policy_config)
                policy.validate(args, reporter(policy.name, res.name))
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(resources, policy_config), reporter(policy.name, ""))
    return found
