"""The policy pack runs in its own environment and cannot import the project, so it carries a
copy of components/rules.py. The copy must stay byte-identical: one rule, one text."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_policy_pack_rules_are_a_byte_identical_copy():
    original = (ROOT / "components" / "rules.py").read_bytes()
    copy = (ROOT / "policies" / "rules.py").read_bytes()
    assert copy == original, (
        "policies/rules.py differs from components/rules.py; copy it again: cp components/rules.py policies/rules.py")


def test_policy_pack_uses_the_copy_for_public_members():
    from policies import guardrails, rules

    assert guardrails.rules is rules
    assert "PUBLIC_MEMBERS" not in vars(guardrails), "guardrails keeps its own list of public principals again"
