"""python -m tools.localvllm: build the vLLM CPU venv, or write the tiny model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import tools.localvllm as localvllm
from tools.localvllm.models import write_tiny_llama
from tools.localvllm.venv import DEFAULT_TORCH_VERSION, DEFAULT_VLLM_VERSION, ensure_vllm_venv


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.localvllm", description=localvllm.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ensure = sub.add_parser("ensure", help="build or reuse the vLLM CPU venv; print its python")
    ensure.add_argument("--version", default=DEFAULT_VLLM_VERSION)
    ensure.add_argument("--torch-version", default=DEFAULT_TORCH_VERSION)
    tiny = sub.add_parser("tiny-model", help="write the tiny random Llama model to DEST")
    tiny.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.command == "ensure":
        print(ensure_vllm_venv(args.version, args.torch_version))
    elif args.command == "tiny-model":
        print(write_tiny_llama(args.dest, python=ensure_vllm_venv()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
