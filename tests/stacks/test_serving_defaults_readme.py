"""The README's defaults table states, for every tuning flag a committed deployment renders, its default and
its measured effect (or says plainly that it was not measured)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from offline.plan import read_stack_file
from stacks.config import load
from stacks.resolve import resolve_stack

ROOT = Path(__file__).resolve().parents[2]
# Flags that tune the engine (the ones a default decides), as opposed to where it listens and what it loads.
TUNING_FLAGS = ("--max-num-seqs", "--gpu-memory-utilization", "--kv-cache-dtype", "--max-model-len",
                "--tensor-parallel-size", "--enforce-eager", "--disable-log-stats", "--enable-lora", "--swap-space")
# The table names a switch by what it turns off or on.
ROW_FOR = {"--enforce-eager": "CUDA graphs", "--disable-log-stats": "stats / metrics", "--enable-lora": "LoRA"}


def defaults_table() -> dict[str, list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Serving defaults"):]
    section = section[:section.index("\n## ", 1)]
    header = "| setting | default | measured effect | why |"
    assert header in section, "the defaults table has a measured-effect column"
    rows = section[section.index(header):].split("\n\n")[0].splitlines()[2:]
    table: dict[str, list[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
        assert len(cells) == 4, row
        table[cells[0].strip("`")] = cells[1:]
    return table


def rendered_tuning_flags() -> set[str]:
    flags: set[str] = set()
    for stack in ("dev", "staging", "prod"):
        values, secrets = read_stack_file(ROOT / f"Pulumi.{stack}.yaml")
        resolved = resolve_stack(load(values, secrets, source=f"Pulumi.{stack}.yaml", stack=stack))
        for d in resolved.deployments.values():
            flags |= {a.split("=", 1)[0] for a in d.container.args if a.split("=", 1)[0] in TUNING_FLAGS}
    return flags


def test_every_row_states_a_default_and_a_measured_effect_or_says_it_was_not_measured():
    for setting, (default, effect, why) in defaults_table().items():
        assert default and why, setting
        measured = re.search(r"\d", effect) is not None
        assert measured or effect.startswith(("not measured", "none")), f"{setting}: {effect!r}"


@pytest.mark.parametrize("flag", TUNING_FLAGS)
def test_every_tuning_flag_has_a_row(flag):
    table = defaults_table()
    assert ROW_FOR.get(flag, flag) in table, f"{flag}: no row in the README's defaults table ({sorted(table)})"


def test_the_committed_stacks_render_only_tuning_flags_the_table_explains():
    flags = rendered_tuning_flags()
    assert "--gpu-memory-utilization" in flags and "--max-model-len" in flags, flags
    table = defaults_table()
    assert all(ROW_FOR.get(f, f) in table for f in flags), flags


def test_the_former_cap_is_not_a_default():
    # The quarter-of-max_model_len cap is described only as what the project used to do.
    table = defaults_table()
    assert "quarter" not in " ".join(table["--max-num-seqs"]).lower()
    assert table["--max-num-seqs"][0].startswith("not emitted"), table["--max-num-seqs"][0]
