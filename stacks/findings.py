"""Preview-time findings: one record per problem, the collector that gathers them, and the
error that stops a preview. Shared by resolve, checks and the program, and imports none of them."""

from __future__ import annotations

import re
from dataclasses import dataclass

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class Check:
    """One preview-time finding about a deployment ("" = the stack)."""

    deployment: str
    level: str  # error | warning | info
    message: str

    def render(self) -> str:
        where = f"deployment {self.deployment}" if self.deployment else "stack"
        return f"{self.level.upper()} {where}: {self.message}"


class Findings:
    """Collects the checks of one deployment ("" = the stack) while it is resolved and checked."""

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self.items: list[Check] = []

    def error(self, message: str) -> None:
        self.items.append(Check(self.deployment, ERROR, message))

    def warn(self, message: str) -> None:
        self.items.append(Check(self.deployment, WARNING, message))

    def info(self, message: str) -> None:
        self.items.append(Check(self.deployment, INFO, message))

    @property
    def failed(self) -> bool:
        return any(c.level == ERROR for c in self.items)


class PreviewCheckError(Exception):
    """Raised before any resource is registered when a deployment cannot fit or serve."""

    def __init__(self, source: str, errors: list[Check]):
        self.errors = errors
        lines = [f"{source}: {len(errors)} deployment check{'s' if len(errors) != 1 else ''} failed; nothing was deployed:"]
        lines += [f"  - {c.render()}" for c in errors]
        super().__init__("\n".join(lines))


# A Hugging Face access token's shape (`hf_` and a long run of letters and digits).
_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{8,}")


def without_tokens(text: str) -> str:
    """``text`` with anything shaped like a Hugging Face token hidden: exception messages quote
    values, and a token pasted into the wrong key must not be echoed."""
    return _TOKEN_SHAPE.sub("hf_(hidden)", text)


def internal_error_line(error: BaseException, traceback_hint: str) -> str:
    """The one line a user sees for a bug (an exception no check or config rule anticipated)."""
    message = without_tokens(" ".join(str(error).split()))
    if len(message) > 300:
        message = message[:297] + "..."
    return (f"internal error (a bug): {type(error).__name__}: {message}; {traceback_hint} and report it "
            "with the command you ran")
