"""Record the resource URNs of every committed stack's offline plan, from any checkout.

    python -m tests.stacks.urn_snapshot --tree /path/to/checkout --out tests/stacks/data/urns-before-renovation

``--tree`` is the root of the checkout whose program is planned (default: this one); its own
``offline.plan`` runs in a fresh interpreter with that tree first on ``sys.path``, so an older
commit is planned with its own code. One ``<stack>.json`` per ``Pulumi.<stack>.yaml`` is
written: the commit, and every registered resource's URN with its type and name, in
registration order. ``tests/stacks/test_urns.py`` checks the current code against them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs inside the planned tree: plan one stack file and print its registrations as JSON.
_PLAN_URNS = """
import json, sys
from pathlib import Path
from offline.plan import plan, read_stack_file
path = Path(sys.argv[1])
stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
values, secret_keys = read_stack_file(path)
result = plan(values, secret_keys, stack=stack, source=path.name)
if result.failed or result.run is None:
    sys.exit(f"{path.name}: the plan failed; URNs are only recorded from a stack that plans")
print(json.dumps([{"urn": r.urn, "type": r.type, "name": r.name} for r in result.run.registrations]))
"""


def plan_urns(tree: Path, stack_file: Path) -> list[dict]:
    """The registrations of ``stack_file`` planned with the program in ``tree``."""
    done = subprocess.run([sys.executable, "-c", _PLAN_URNS, str(stack_file)], cwd=tree, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"planning {stack_file.name} in {tree} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def commit_of(tree: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True,
                          check=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stacks.urn_snapshot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout whose program is planned")
    parser.add_argument("--out", type=Path, required=True, help="directory for <stack>.json")
    args = parser.parse_args(argv)
    tree = args.tree.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    commit = commit_of(tree)
    for stack_file in sorted(tree.glob("Pulumi.*.yaml")):
        stack = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
        resources = plan_urns(tree, stack_file)
        document = {"stack": stack, "commit": commit, "resources": resources}
        (args.out / f"{stack}.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        print(f"{stack}: {len(resources)} URNs from {commit[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
