"""Renames replace nothing: every resource URN the committed stacks had before the renovation
still exists, or an alias of a current resource covers it.

A component's type token or parent is part of its URN and of every child's; a changed URN
without an alias makes Pulumi delete the deployed resource and create a new one (a new Vertex
AI endpoint id, a new cluster). The URNs before are test data recorded from the program as it
was (tests/stacks/data/urns-before-renovation/README.md says how); here each committed stack is
planned with the current code under the mock engine, and the engine's alias rules are applied
to what the program registered:

* an alias spec names the old name, type or parent; empty fields mean "as now";
* a child inherits its parent's aliases (the engine re-derives the child's old URN under each
  old URN of its parent), so renaming a component covers its whole subtree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offline.mocks import Registration
from offline.plan import ROOT, plan, project_name, read_stack_file

BEFORE = Path(__file__).resolve().parent / "data" / "urns-before-renovation"
STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in ROOT.glob("Pulumi.*.yaml"))
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


def make_urn(stack: str, project: str, parent_urn: str, type_: str, name: str) -> str:
    """A URN as the mock engine forms it: the parent's own type, `$`, the resource's type."""
    parent_type = parent_urn.split("::")[2].split("$")[-1] if parent_urn else ""
    qualified = f"{parent_type}${type_}" if parent_type else type_
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


def covered_urns(registrations: list[Registration], stack: str, project: str) -> dict[str, str]:
    """Every URN a registered resource answers to (its own and its aliases') -> that resource's URN."""
    by_urn = {r.urn: r for r in registrations}
    root = f"urn:pulumi:{stack}::{project}::{ROOT_STACK_TYPE}::{project}-{stack}"
    known: dict[str, set[str]] = {}

    def answers_to(r: Registration) -> set[str]:
        if r.urn in known:
            return known[r.urn]
        parent = by_urn.get(r.parent)
        parent_urns = answers_to(parent) if parent is not None else {r.parent or root}
        names_types = {(r.name, r.type)}
        urns = {r.urn}
        for alias in r.aliases:
            if alias.urn:
                urns.add(alias.urn)
                continue
            name, type_ = alias.name or r.name, alias.type or r.type
            names_types.add((name, type_))
            if alias.no_parent:
                urns.add(make_urn(stack, project, root, type_, name))
            elif alias.parent_urn:
                urns.add(make_urn(stack, project, alias.parent_urn, type_, name))
        # Each (old) name and type under each URN the parent answers to: the engine's inherited aliases.
        for parent_urn in parent_urns:
            for name, type_ in names_types:
                urns.add(make_urn(stack, project, parent_urn, type_, name))
        known[r.urn] = urns
        return urns

    covered: dict[str, str] = {}
    for r in registrations:
        for urn in answers_to(r):
            covered.setdefault(urn, r.urn)
    return covered


# Resources the committed stacks delete on purpose, not by a rename: (type, name after the stack's
# `llm-<stack>-` prefix) -> why. Since the weights-copy job, Cloud Run serves the bucket copy instead
# of the baked image (its build, build account and their grants go, and the Cloud Build API is no
# longer enabled), and the GKE pod no longer holds the Hugging Face token (its Kubernetes Secret goes).
# In prod the build account and the Secret are protected: README "Weights and cold starts" gives the
# `pulumi state unprotect` step that deletion needs.
BAKED_IMAGE = "Cloud Run serves the weights-copy job's bucket copy; the baked image is an option no stack uses"
RETIRED: dict[tuple[str, str], str] = {
    ("llm-serving:cloudrun:ModelImageBuild", "gemma-1b-image"): BAKED_IMAGE,
    ("command:local:Command", "gemma-1b-image-build"): BAKED_IMAGE,
    ("llm-serving:iam:WorkloadServiceAccount", "gemma-1b-build"): BAKED_IMAGE,
    ("gcp:serviceaccount/account:Account", "gemma-1b-build-sa"): BAKED_IMAGE,
    ("gcp:projects/iAMMember:IAMMember", "gemma-1b-build-logging-logwriter"): BAKED_IMAGE,
    ("gcp:secretmanager/secretIamMember:SecretIamMember", "hf-token-gemma-1b-build-accessor"): BAKED_IMAGE,
    ("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
     "registry-images-gemma-1b-build-artifactregistry-writer"): BAKED_IMAGE,
    ("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
     "registry-images-gemma-1b-build-artifactregistry-reader"): BAKED_IMAGE,
    ("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
     "registry-dockerhub-gemma-1b-build-artifactregistry-reader"): BAKED_IMAGE,
    ("gcp:projects/service:Service", "apis-cloudbuild"): BAKED_IMAGE,
    ("kubernetes:core/v1:Secret", "llama-70b-hf-token"): "the GKE pod reads the bucket copy and holds no token",
}


def _retired(stack: str, resource: dict) -> bool:
    return (resource["type"], resource["name"].removeprefix(f"llm-{stack}-")) in RETIRED


def test_every_committed_stack_has_recorded_urns():
    recorded = sorted(p.stem for p in BEFORE.glob("*.json"))
    assert recorded == STACKS, (f"URNs recorded for {recorded} but the committed stacks are {STACKS}; a new stack "
                                "has no renames to guard, so record it from the code before any rename")


@pytest.mark.parametrize("stack", STACKS)
def test_old_urns_survive_or_are_aliased(stack):
    before = json.loads((BEFORE / f"{stack}.json").read_text(encoding="utf-8"))
    values, secret_keys = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
    result = plan(values, secret_keys, stack=stack, source=f"Pulumi.{stack}.yaml")
    assert not result.failed and result.run is not None, f"{stack}: the plan failed: {result.checks}"
    covered = covered_urns(result.run.registrations, stack, project_name())
    gone = [r for r in before["resources"] if r["urn"] not in covered]
    lost = [f"{r['type']} {r['name']} ({r['urn']})" for r in gone if not _retired(stack, r)]
    kept = [r["name"] for r in before["resources"] if _retired(stack, r) and r["urn"] in covered]
    assert not kept, f"{stack}: resources listed as retired on purpose are still planned: {kept}; update RETIRED"
    assert not lost, (f"{stack}: {len(lost)} resource(s) would be replaced, their URN neither exists nor is an "
                      "alias of a current resource; give the renamed component or moved child "
                      "`aliases=[pulumi.Alias(...)]`:\n  " + "\n  ".join(lost))


def test_an_unaliased_rename_is_caught():
    """The check fails when a type changes without an alias (so the test above can fail)."""
    from offline.mocks import AliasRecord

    stack, project = "dev", "llm-serving"
    root = f"urn:pulumi:{stack}::{project}::{ROOT_STACK_TYPE}::{project}-{stack}"
    old_parent = make_urn(stack, project, root, "llm-serving:old:Thing", "thing")
    old_child = make_urn(stack, project, old_parent, "gcp:storage/bucket:Bucket", "thing-bucket")

    def registrations(aliases: tuple[AliasRecord, ...]) -> list[Registration]:
        parent = make_urn(stack, project, root, "llm-serving:new:Thing", "thing")
        child = make_urn(stack, project, parent, "gcp:storage/bucket:Bucket", "thing-bucket")
        return [Registration("llm-serving:new:Thing", "thing", parent, "", {}, False, "", (), aliases),
                Registration("gcp:storage/bucket:Bucket", "thing-bucket", child, parent, {}, True, "", ())]

    unaliased = covered_urns(registrations(()), stack, project)
    assert old_parent not in unaliased and old_child not in unaliased, "a rename without alias went unnoticed"
    aliased = covered_urns(registrations((AliasRecord(type="llm-serving:old:Thing"),)), stack, project)
    assert old_parent in aliased, "the component's own alias was not applied"
    assert old_child in aliased, "the child did not inherit its parent's alias"
