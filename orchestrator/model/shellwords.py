"""Placeholder until the full checker lands: quotes, backquotes and comments only."""

from __future__ import annotations

from dataclasses import dataclass

MARK = "\x1e"


def mark(index: int) -> str:
    return f"{MARK}{index}{MARK}"


@dataclass(frozen=True)
class Misplaced:
    index: int
    where: str


def misplaced(script: str) -> list[Misplaced]:
    found: list[Misplaced] = []
    quote = ""
    i = 0
    while i < len(script):
        c = script[i]
        if c == MARK:
            end = script.index(MARK, i + 1)
            index = int(script[i + 1 : end])
            if quote:
                found.append(
                    Misplaced(
                        index,
                        {
                            "'": "inside '...' quotes",
                            '"': 'inside "..." quotes',
                            "`": "inside backquotes",
                            "#": "in a comment",
                        }[quote],
                    )
                )
            i = end + 1
            continue
        if quote == "#":
            if c == "\n":
                quote = ""
        elif quote:
            if c == quote:
                quote = ""
        elif c in "'\"`":
            quote = c
        elif c == "#" and (i == 0 or script[i - 1] in " \t\n;&|"):
            quote = "#"
        i += 1
    return found
