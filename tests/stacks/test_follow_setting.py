"""One setting followed from the stack file to the resource input (README "Layout"): each
deployment's `vllm.maxModelLen` in the committed stack files reaches the server arguments of the
resource that runs it, on every platform."""

from __future__ import annotations

import pytest

from offline.mocks import unwrap_secrets
from offline.plan import ROOT, plan, read_stack_file

STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml"))


def server_args(registrations, resource_name: str) -> list[str]:
    """The server arguments as the resource input carries them, by platform."""
    found = [r for r in registrations if r.name == resource_name]
    assert len(found) == 1, f"{resource_name}: expected one registration, got {len(found)}"
    inputs = unwrap_secrets(dict(found[0].inputs))
    if "modelConfig" in inputs:  # Vertex AI endpoint
        return inputs["modelConfig"]["containerSpec"]["args"]
    if "template" in inputs and "containers" in inputs["template"]:  # Cloud Run service
        return inputs["template"]["containers"][0]["args"]
    return inputs["spec"]["template"]["spec"]["containers"][0]["args"]  # Kubernetes Deployment


@pytest.mark.parametrize("stack", STACKS)
def test_max_model_len_reaches_the_container_args(stack):
    values, secret_keys = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    result = plan(values, secret_keys, stack=stack, source=f"Pulumi.{stack}.yaml")
    assert result.run is not None, f"{stack}: the plan failed: {result.checks}"
    prefix = result.resolved.config.prefix
    resources = {"vertex": "{}-deployment", "cloudrun": "{}-service", "gke": "{}-deployment"}
    followed = 0
    for name, deployment in values["llm-serving:deployments"].items():
        wanted = (deployment.get("vllm") or {}).get("maxModelLen")
        if wanted is None:
            continue
        resource = resources[deployment["platform"]].format(f"{prefix}-{name}")
        args = server_args(result.run.registrations, resource)
        assert f"--max-model-len={wanted}" in args, f"{stack} {resource}: maxModelLen {wanted} not in {args}"
        followed += 1
    assert followed, f"{stack}: no deployment sets maxModelLen, nothing was followed"
