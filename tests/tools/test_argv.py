"""tools.argv: the one reader and editor of server argv lists the tools share."""

from __future__ import annotations

from tools.argv import flag_name, flag_values, has_flag, remove_flag, set_flag

ARGV = ["python3", "-m", "vllm.entrypoints.openai.api_server", "--host=0.0.0.0", "--port", "8000",
        "--enforce-eager", "--max-model-len=4096"]


def test_flag_name_and_presence():
    assert flag_name("--max-model-len=4096") == "--max-model-len" and flag_name("--port") == "--port"
    assert has_flag(ARGV, "--enforce-eager") and has_flag(ARGV, "--host") and not has_flag(ARGV, "--model")


def test_flag_values_reads_both_spellings_in_order():
    assert flag_values(ARGV, ("--host", "--port")) == ["0.0.0.0", "8000"]
    assert flag_values(["--port"], ("--port",)) == [""], "a flag that ends argv has an empty value"
    assert flag_values(ARGV, ("--model",)) == []


def test_set_flag_keeps_spelling_and_dedupes():
    assert set_flag(["x", "--port=1", "--port", "2"], "--port", "9") == ["x", "--port=9"]
    assert set_flag(["x", "--port", "1"], "--port", "9") == ["x", "--port", "9"]
    assert set_flag(["x"], "--load-format", "dummy") == ["x", "--load-format", "dummy"]


def test_remove_flag_removes_every_spelling():
    argv = ["x", "--download-dir", "/data", "--download-dir=/d2", "--y"]
    assert remove_flag(argv, "--download-dir", takes_value=True) == ["x", "--y"]
    assert remove_flag(["x", "--no-enforce-eager", "y"], "--no-enforce-eager", takes_value=False) == ["x", "y"]


def test_edits_do_not_mutate_their_input():
    argv = list(ARGV)
    set_flag(argv, "--port", "1")
    remove_flag(argv, "--port", takes_value=True)
    assert argv == ARGV
