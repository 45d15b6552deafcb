"""The README's "Layout" table matches the tree: every path it names exists, and every top-level
entry of the repository is named in it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def layout_paths() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [path for row in rows for path in re.findall(r"`([^`]+)`", row.split("|")[1])]


def test_layout_table_is_found():
    paths = layout_paths()
    assert {"components/", "stacks/", "offline/", "tools/", "tests/"} <= set(paths), paths


def test_every_path_in_the_layout_table_exists():
    missing = [p for p in layout_paths() if not list(ROOT.glob(p.replace("<stack>", "*").rstrip("/")))]
    assert not missing, f"README.md Layout names paths that do not exist: {missing}"


def test_every_top_level_entry_is_in_the_layout_table():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    top = {path.split("/")[0] for path in tracked} - {"README.md", ".gitignore"}
    named = {p.rstrip("/").split("/")[0] for p in layout_paths()}
    named |= {t for t in top if any(re.fullmatch(p.replace(".", r"\.").replace("<stack>", "[a-z]+"), t)
                                    for p in layout_paths() if "<stack>" in p)}
    assert not top - named, f"top-level entries missing from README.md Layout: {sorted(top - named)}"
