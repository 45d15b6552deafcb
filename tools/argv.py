"""Reading and editing a server argv list, for the tools that run a rendered vLLM command.

A valued flag is spelt ``--name value`` or ``--name=value``; a boolean one is a bare ``--name``.
Every edit returns a new list and keeps the spelling of the occurrence it replaces.
"""

from __future__ import annotations

from collections.abc import Sequence


def flag_name(token: str) -> str:
    """``--name`` of a token ``--name`` or ``--name=value``."""
    return token.split("=", 1)[0]


def has_flag(argv: Sequence[str], name: str) -> bool:
    return any(flag_name(str(token)) == name for token in argv)


def flag_values(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """Values of every occurrence of the flags *names*, in order; "" for a flag that ends argv."""
    values = []
    for i, token in enumerate(argv):
        for name in names:
            if token == name:
                values.append(argv[i + 1] if i + 1 < len(argv) else "")
            elif token.startswith(name + "="):
                values.append(token[len(name) + 1:])
    return values


def set_flag(argv: Sequence[str], name: str, value: str) -> list[str]:
    """*argv* with *name* set to *value* once: the first occurrence replaced, later ones dropped,
    appended as ``name value`` when absent."""
    out: list[str] = []
    replaced = False
    i = 0
    tokens = [str(a) for a in argv]
    while i < len(tokens):
        token = tokens[i]
        if token == name or token.startswith(name + "="):
            width = 1 if "=" in token else 2
            if not replaced:
                out += [f"{name}={value}"] if "=" in token else [name, value]
                replaced = True
            i += width
            continue
        out.append(token)
        i += 1
    if not replaced:
        out += [name, value]
    return out


def remove_flag(argv: Sequence[str], name: str, *, takes_value: bool) -> list[str]:
    """*argv* without any occurrence of *name* (``--f v`` when it takes a value, ``--f=v``, bare ``--f``)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == name:
            i += 2 if takes_value and i + 1 < len(argv) else 1
            continue
        if token.startswith(name + "="):
            i += 1
            continue
        out.append(token)
        i += 1
    return out
