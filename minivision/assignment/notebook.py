"""Jupytext percent-format scripts (``# %%`` code cells, ``# %% [markdown]`` cells) to
nbformat v4 notebooks, written with the json module alone."""

from __future__ import annotations

import json
import re

CELL = re.compile(r"^# %%(?:[ \t]+(?P<title>.*?))?[ \t]*$")
KIND = re.compile(r"\[(?P<kind>markdown|md|raw)\]")
METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def _strip_header(lines: list[str]) -> list[str]:
    """Drop jupytext's YAML header, a ``# ---`` ... ``# ---`` block at the top."""
    if lines and lines[0].strip() == "# ---":
        for number in range(1, len(lines)):
            if lines[number].strip() == "# ---":
                return lines[number + 1 :]
    return lines


def _uncomment(line: str) -> str:
    """A markdown line as written in a percent script, ``# text``, back to ``text``."""
    return line[2:] if line.startswith("# ") else line.removeprefix("#")


def _cell(kind: str, lines: list[str], number: int) -> dict | None:
    """An nbformat v4 cell from its lines, blank lines around it trimmed; None when empty."""
    if kind != "code":
        lines = [_uncomment(line) for line in lines]
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    if not lines:
        return None
    source = [line + "\n" for line in lines[:-1]] + [lines[-1]]
    cell = {"cell_type": kind, "id": f"cell-{number}", "metadata": {}, "source": source}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def percent_to_notebook(text: str) -> dict:
    """The notebook (a JSON-ready dict, nbformat 4.5) of a percent-format script. Text
    before the first ``# %%`` marker, if any, becomes a code cell."""
    chunks, kind, lines = [], "code", []
    for line in _strip_header(text.splitlines()):
        marker = CELL.match(line)
        if marker is None:
            lines.append(line)
            continue
        chunks.append((kind, lines))
        found = KIND.search(marker["title"] or "")
        kind = "code" if found is None else {"md": "markdown"}.get(found["kind"], found["kind"])
        lines = []
    chunks.append((kind, lines))
    cells = [_cell(kind, lines, number) for number, (kind, lines) in enumerate(chunks)]
    return {
        "cells": [cell for cell in cells if cell],
        "metadata": METADATA,
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write_notebook(text: str, path) -> None:
    """Convert a percent-format script and write it to ``path`` as ``.ipynb`` JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(percent_to_notebook(text), f, indent=1, ensure_ascii=False)
        f.write("\n")
