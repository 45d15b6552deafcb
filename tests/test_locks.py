"""Reproducible installs: every package the program, the tests and the policy pack install is
pinned with its hashes, and the locks agree with the hand-edited `*.in` files and each other.

Re-resolve with `make lock` after editing a `*.in` file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LOCKS = {
    "requirements.txt": "requirements.in",
    "requirements-dev.txt": "requirements-dev.in",
    "policies/requirements.txt": "policies/requirements.in",
    "requirements-checkov.txt": "requirements-checkov.in",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: str) -> dict[str, tuple[str, int]]:
    """package -> (version, number of hashes) from a pip-compile lock."""
    text = (ROOT / lock).read_text()
    packages: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=\S)", text):
        first = block.split("\n", 1)[0]
        if not first or first.startswith("#"):
            continue
        match = PIN.match(first)
        assert match, f"{lock}: {first!r} is not an exact pin (name==version)"
        packages[normalise(match.group(1))] = (match.group(2), block.count("--hash=sha256:"))
    return packages


def declared(source: str) -> dict[str, str]:
    """package -> version of the `name==version` lines of a `*.in` file and the files it includes."""
    pins: dict[str, str] = {}
    for line in (ROOT / source).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(declared(str((ROOT / source).parent.relative_to(ROOT) / line[3:].strip())))
        elif line:
            match = PIN.match(line)
            assert match, f"{source}: {line!r} must pin an exact version (name==version)"
            pins[normalise(match.group(1))] = match.group(2)
    return pins


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_locked_package_is_pinned_with_hashes(lock):
    packages = locked(lock)
    assert packages, f"{lock} locks nothing"
    unhashed = sorted(name for name, (_, hashes) in packages.items() if hashes == 0)
    assert unhashed == [], f"{lock}: packages without --hash: {unhashed}; run `make lock`"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_holds_what_its_source_pins(lock):
    packages = locked(lock)
    for name, version in declared(LOCKS[lock]).items():
        assert name in packages, f"{LOCKS[lock]} pins {name}=={version} but {lock} does not have it; run `make lock`"
        assert packages[name][0] == version, \
            f"{LOCKS[lock]} pins {name}=={version} but {lock} has {packages[name][0]}; run `make lock`"


def test_the_program_the_tests_and_the_policy_pack_install_the_same_versions():
    dev = locked("requirements-dev.txt")
    # checkov's lock stands alone on purpose (its own virtualenv; see requirements-checkov.in).
    for lock in ("requirements.txt", "policies/requirements.txt"):
        for name, (version, _) in locked(lock).items():
            assert name in dev and dev[name][0] == version, \
                f"{lock} has {name}=={version}, the dev lock {dev.get(name, ('nothing',))[0]}; run `make lock`"


def test_locks_name_no_machine_specific_index():
    for lock in LOCKS:
        text = (ROOT / lock).read_text()
        assert not re.search(r"^--(extra-)?index-url|^--find-links|file://", text, re.M), lock


def test_pulumi_installs_the_program_lock_with_pip():
    runtime = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["runtime"]
    # The pip toolchain installs requirements.txt, which is the hashed lock.
    assert runtime["options"]["toolchain"] == "pip"
    assert "--hash=sha256:" in (ROOT / "requirements.txt").read_text()


def test_make_and_ci_install_from_the_locks():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements-dev.txt" in makefile
    assert "--require-hashes -r requirements-checkov.txt" in makefile
    for workflow in (ROOT / ".github" / "workflows").glob("*.yml"):
        for line in workflow.read_text().splitlines():
            if "pip install" in line:
                assert "--require-hashes" in line, f"{workflow.name}: {line.strip()}"
