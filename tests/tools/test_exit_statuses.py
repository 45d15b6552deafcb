"""Every command's exit statuses: a bug is exit 3 with one line (the traceback only with --debug),
an unreadable stack file exit 2. The plan's own statuses are in tests/offline/test_plan_cli.py."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from offline import plan as plan_module
from tools import bench, docs, load_bench, loadtest, promote, vertex_client

ROOT = Path(__file__).resolve().parents[2]


def _planted(*args, **kwargs):
    raise KeyError("planted bug")


# (command, module attribute the bug is planted in, argv that reaches it)
COMMANDS: list[tuple[str, Callable[[list[str]], int], object, str, list[str]]] = [
    ("tools.promote", promote.main, promote, "promote", ["dev", "staging", "--dry-run"]),
    ("tools.bench", bench.main, bench, "_main", ["dev", "gemma-1b"]),
    ("tools.loadtest", loadtest.main, loadtest, "preflight", ["--url", "http://127.0.0.1:9", "--model", "m", "--json"]),
    ("tools.vertex_client", vertex_client.main, vertex_client, "run", ["--outputs", "-", "--deployment", "x", "chat"]),
    ("tools.docs", docs.main, docs, "config_reference", []),
    ("tools.load_bench", load_bench.main, load_bench, "_run", ["--repeats", "1"]),
]


@pytest.mark.parametrize("command,main,module,attribute,argv", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_bug_is_exit_3_with_one_line(monkeypatch, capsys, command, main, module, attribute, argv):
    monkeypatch.setattr(module, attribute, _planted)
    status = main(list(argv))
    err = capsys.readouterr().err
    assert status == 3, f"{command}: exit {status}\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, f"{command}: expected one line:\n{err}"
    assert lines[0].startswith(f"{command}: internal error (a bug): KeyError: 'planted bug'"), lines[0]
    assert "--debug" in lines[0], lines[0]

    status = main(list(argv) + ["--debug"])
    err = capsys.readouterr().err
    assert status == 3 and "Traceback (most recent call last)" in err, f"{command} --debug:\n{err}"


def test_bench_with_an_unreadable_stack_file_is_exit_2(tmp_path, monkeypatch, capsys):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  gcp:project: a\n  gcp:project: b\n", encoding="utf-8")
    monkeypatch.setattr(plan_module, "ROOT", tmp_path)
    status = bench.main(["dev", "gemma-1b"])
    err = capsys.readouterr().err
    assert status == 2, f"exit {status}\n{err}"
    assert "Pulumi.dev.yaml" in err and "line 3: duplicate key 'gcp:project' (first at line 2)" in err, err


def test_docs_prints_the_reference_with_exit_0(capsys):
    assert docs.main([]) == 0
    assert "#### `llm-serving:deployments.<name>`" in capsys.readouterr().out
    assert docs.main(["--bogus"]) == 2
