"""Entry point the Pulumi CLI runs for `--policy-pack policies`.

PolicyPack() starts a gRPC server and blocks, so nothing may import this file:
tests import `policies.guardrails` instead.
"""

from guardrails import POLICIES  # the CLI runs this directory, so it is on sys.path
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(
    "llm-serving-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
