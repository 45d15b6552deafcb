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


# --------------------------------------------------------------------------- the stack-file schema

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from tools import docs  # noqa: E402
from tools.promote import main as promote_main  # noqa: E402

ROOT = README.parent
STACKS = ["dev", "staging", "prod"]
MODELINE = "# yaml-language-server: $schema=./stacks/stack-file.schema.json"


def validate(path: Path) -> subprocess.CompletedProcess:
    checker = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run([str(checker), "--schemafile", str(docs.SCHEMA_PATH), str(path)],
                          capture_output=True, text=True, timeout=120)


def test_committed_schema_is_generated_from_the_config():
    assert docs.SCHEMA_PATH.read_text(encoding="utf-8") == docs.schema_text(), \
        "stacks/stack-file.schema.json is stale; regenerate it with `python -m tools.docs --write`"
    assert docs.main(["--check"]) == 0


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_file_names_the_schema_and_matches_it(stack):
    path = ROOT / f"Pulumi.{stack}.yaml"
    assert path.read_text(encoding="utf-8").splitlines()[0] == MODELINE, f"{path.name} lost its schema line"
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_promoted_stack_file_still_matches_the_schema(tmp_path):
    for stack in STACKS:
        shutil.copy(ROOT / f"Pulumi.{stack}.yaml", tmp_path / f"Pulumi.{stack}.yaml")
    assert promote_main(["staging", "prod", "--root", str(tmp_path)]) == 0
    promoted = tmp_path / "Pulumi.prod.yaml"
    assert promoted.read_text(encoding="utf-8").splitlines()[0] == MODELINE
    result = validate(promoted)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mistake, fragment", [
    ("  llm-serving:enviroment: dev\n", "llm-serving:enviroment"),
    ("  llm-serving:checkQuota: sometimes\n", "sometimes"),
    ("  llm-serving:hfToken: hf_plaintext\n", "hf_plaintext"),
])
def test_the_schema_refuses_what_the_config_refuses(tmp_path, mistake, fragment):
    text = (ROOT / "Pulumi.dev.yaml").read_text(encoding="utf-8").replace("config:\n", "config:\n" + mistake, 1)
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text, encoding="utf-8")
    result = validate(path)
    assert result.returncode == 1, f"the schema accepted {mistake.strip()!r}"
    assert fragment in result.stdout + result.stderr
