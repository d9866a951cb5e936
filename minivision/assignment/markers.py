"""Find ``# BEGIN SOLUTION <part>: <task>`` ... ``# END SOLUTION <part>`` regions in source
text, and render the text with chosen regions replaced by ``raise NotImplementedError``."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from minivision.assignment.parts import PARTS

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?P<rest>.*)$")
END = re.compile(r"^[ \t]*# END SOLUTION(?P<rest>.*)$")
NAMED = re.compile(r"^ (?P<part>\w+)(?::[ \t]*(?P<task>.*?))?[ \t]*$")  # what follows "SOLUTION"
END_NAMED = re.compile(r"^ (?P<part>\w+)[ \t]*$")


@dataclass(frozen=True)
class Region:
    """A marked region: its part, the task it states, and the 0-based line numbers of its
    BEGIN and END markers (the solution lies strictly between them)."""

    part: str
    task: str
    indent: str
    begin: int
    end: int


def _named(pattern, rest: str, where: str) -> re.Match:
    match = pattern.match(rest)
    if match is None:
        raise ValueError(f"{where}: a solution marker must name its part, as in "
                         f"'# BEGIN SOLUTION conv: <task>' and '# END SOLUTION conv'")
    if match["part"] not in PARTS:
        raise ValueError(f"{where}: unknown part {match['part']!r} in a solution marker; "
                         f"known parts: {', '.join(PARTS)}")
    return match


def find_regions(text: str, source: str = "<text>") -> list[Region]:
    """The regions of ``text`` in order. Raises ValueError, naming ``source`` and the line,
    for a marker without a known part, a nested or unclosed region, or an END that does
    not match its BEGIN."""
    regions, open_region = [], None
    for number, line in enumerate(text.splitlines()):
        where = f"{source}:{number + 1}"
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if open_region:
                raise ValueError(f"{where}: BEGIN SOLUTION inside the region opened at line {open_region[1] + 1}")
            named = _named(NAMED, begin["rest"], where)
            open_region = (named, number, begin["indent"])
        elif end:
            part = _named(END_NAMED, end["rest"], where)["part"]
            if open_region is None or open_region[0]["part"] != part:
                raise ValueError(f"{where}: END SOLUTION {part} does not close an open region of part {part!r}")
            named, start, indent = open_region
            regions.append(Region(part, named["task"] or "not written yet", indent, start, number))
            open_region = None
    if open_region:
        raise ValueError(f"{source}:{open_region[1] + 1}: BEGIN SOLUTION {open_region[0]['part']} is never closed")
    return regions


def render(text: str, regions: list[Region], include, notes: dict | None = None) -> str:
    """``text`` without marker lines; each region of a part in ``include`` replaced by
    ``raise NotImplementedError("<part>: <task><note>")`` at the region's indentation,
    ``notes`` giving an optional suffix per part (such as the tutorial to read)."""
    lines = text.splitlines(keepends=True)
    out, position = [], 0
    for region in regions:
        out.extend(lines[position:region.begin])
        if region.part in include:
            message = f"{region.part}: {region.task}{(notes or {}).get(region.part, '')}"
            out.append(f"{region.indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})\n")
        else:
            out.extend(lines[region.begin + 1:region.end])
        position = region.end + 1
    out.extend(lines[position:])
    return "".join(out)
