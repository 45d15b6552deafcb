"""Exit statuses every command-line entry point of the project shares, and the guard that keeps them.

    0  done (planned, promoted, benchmarked...)
    1  a check refused (a preview check failed, a promotion was refused, requests failed)
    2  invalid input: a bad stack file, bad arguments, an unreadable input file
    3  internal error: a bug in this project; one line says so, ``--debug`` shows the traceback

A pipeline can trust 1 and 2 as "the input was refused" and 3 as "report this".
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Optional

from stacks.findings import internal_error_line

OK = 0
REFUSED = 1
INVALID_INPUT = 2
INTERNAL_ERROR = 3

DEBUG_FLAG = "--debug"


class ToolError(Exception):
    """What a command refuses or fails on, in one sentence for the user, with its exit status:
    ``REFUSED`` (the default: the run or the server failed) or ``INVALID_INPUT`` (arguments, stack)."""

    def __init__(self, message: str, status: int = REFUSED):
        super().__init__(message)
        self.status = status


def guarded(main: Callable[[list[str]], int], argv: Optional[Sequence[str]] = None, *, prog: str = "") -> int:
    """Run ``main(argv)`` (``--debug`` removed) so that a bug exits 3 with one line, not a traceback.

    ``SystemExit`` passes through (argparse exits 2 on bad arguments); Ctrl-C exits 130."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        return main(args)
    except KeyboardInterrupt:
        print(f"{prog + ': ' if prog else ''}interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place a bug becomes exit status 3
        # The program wraps a bug it meets under the engine (stacks.program.ProgramBug); show the bug.
        original = getattr(error, "original", None) or error
        if debug:
            traceback.print_exception(original)
        print(f"{prog + ': ' if prog else ''}{internal_error_line(original, f'rerun with {DEBUG_FLAG} for the traceback')}",
              file=sys.stderr)
        return INTERNAL_ERROR
