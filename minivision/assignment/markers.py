"""Find ``# BEGIN SOLUTION <part>: <task>`` ... ``# END SOLUTION <part>`` regions in source
text, and render the text with chosen regions replaced by ``raise NotImplementedError``.

``# BEGIN FAST PATH <part>`` ... ``# END FAST PATH <part>`` marks code that does a part's
work faster without the code the student writes (the Winograd convolution beside im2col,
the unrolled 2x2 max pool beside the general loop). A student copy without that part
drops the region whole, so the student's code runs, and is graded, everywhere."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from minivision.assignment.parts import PARTS

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN (?P<kind>SOLUTION|FAST PATH)(?P<rest>.*)$")
END = re.compile(r"^[ \t]*# END (?P<kind>SOLUTION|FAST PATH)(?P<rest>.*)$")
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
    fast_path: bool = False  # a FAST PATH region: dropped, not replaced, in a copy without its part


def _named(pattern, rest: str, where: str, kind: str) -> re.Match:
    match = pattern.match(rest)
    if match is None:
        raise ValueError(f"{where}: a {kind.lower()} marker must name its part, as in "
                         f"'# BEGIN {kind} conv: <task>' and '# END {kind} conv'")
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
                raise ValueError(f"{where}: BEGIN {begin['kind']} inside the region opened at line {open_region[1] + 1}")
            named = _named(NAMED, begin["rest"], where, begin["kind"])
            open_region = (named, number, begin["indent"], begin["kind"])
        elif end:
            part = _named(END_NAMED, end["rest"], where, end["kind"])["part"]
            if open_region is None or (open_region[0]["part"], open_region[3]) != (part, end["kind"]):
                raise ValueError(f"{where}: END {end['kind']} {part} does not close an open "
                                 f"{end['kind'].lower()} region of part {part!r}")
            named, start, indent, kind = open_region
            regions.append(Region(part, named["task"] or "not written yet", indent, start, number,
                                  fast_path=kind == "FAST PATH"))
            open_region = None
    if open_region:
        raise ValueError(f"{source}:{open_region[1] + 1}: BEGIN {open_region[3]} {open_region[0]['part']} "
                         f"is never closed")
    return regions


def render(text: str, regions: list[Region], include, notes: dict | None = None) -> str:
    """``text`` without marker lines; each solution region of a part in ``include`` replaced
    by ``raise NotImplementedError("<part>: <task><note>")`` at the region's indentation
    (``notes`` giving an optional suffix per part, such as the tutorial to read), each fast
    path of such a part dropped."""
    lines = text.splitlines(keepends=True)
    out, position = [], 0
    for region in regions:
        out.extend(lines[position:region.begin])
        if region.part not in include:
            out.extend(lines[region.begin + 1:region.end])
        elif not region.fast_path:  # (a fast path of an included part is dropped whole)
            message = f"{region.part}: {region.task}{(notes or {}).get(region.part, '')}"
            out.append(f"{region.indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})\n")
        position = region.end + 1
    out.extend(lines[position:])
    return "".join(out)
