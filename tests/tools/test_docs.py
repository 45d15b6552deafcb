"""README's config reference is generated from the schema; this keeps them identical."""

from pathlib import Path

from tools.docs import BEGIN, END, config_reference

README = Path(__file__).resolve().parent.parent.parent / "README.md"


def test_readme_config_reference_matches_schema():
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "README.md lost its config-reference markers"
    section = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert section == config_reference().strip(), (
        "README.md's config reference differs from stacks/config.py; regenerate it with "
        "`python -c 'from pathlib import Path; from tools.docs import replace_section; "
        "p = Path(\"README.md\"); p.write_text(replace_section(p.read_text()))'`"
    )


def test_readme_quick_start_is_the_two_commands():
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.splitlines() if line.startswith("make ")]
    assert commands == ["make plan", "make test"], f"quick start shows {commands}"
