"""Find ``# BEGIN SOLUTION <part>: <task>`` ... ``# END SOLUTION <part>`` regions in source
text, and render the text with chosen regions replaced by ``raise NotImplementedError``.

Solution regions live in ``minivision/reference/``: the student writes the readable version.

``# BEGIN FAST PATH <part>[, <part>...]`` ... ``# END FAST PATH <part>[, ...]`` marks code that
does a part's work without the code the student writes (the dispatch to an op's fast path, the
import of a fast-path module). A student copy without one of those parts drops the region
whole, so the student's code runs, and is graded, everywhere. A line
``# FAST PATH FILE <part>[, <part>...]`` at the left margin marks a whole module as a fast path
(Numba kernels, CUDA kernels, Winograd): a copy without one of its parts leaves the file out."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from minivision.assignment.parts import PARTS

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN (?P<kind>SOLUTION|FAST PATH)(?P<rest>.*)$")
END = re.compile(r"^[ \t]*# END (?P<kind>SOLUTION|FAST PATH)(?P<rest>.*)$")
NAMED = re.compile(r"^ (?P<part>\w+)(?::[ \t]*(?P<task>.*?))?[ \t]*$")  # what follows "SOLUTION"
END_NAMED = re.compile(r"^ (?P<part>\w+)[ \t]*$")
PART_LIST = r"\w+(?:,[ \t]*\w+)*"
FAST_NAMED = re.compile(rf"^ (?P<part>{PART_LIST})[ \t]*$")  # what follows "FAST PATH"
FILE_MARKER = re.compile(rf"^# FAST PATH FILE (?P<part>{PART_LIST})[ \t]*$", re.MULTILINE)


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
    parts: tuple[str, ...] = ()  # a fast path's parts (all of them; ``part`` is the first)

    def taken_out_by(self, include) -> bool:
        """Whether a copy without the parts ``include`` replaces (or drops) this region."""
        return any(part in include for part in self.parts or (self.part,))


def _known(names: str, where: str) -> tuple[str, ...]:
    parts = tuple(name.strip() for name in names.split(","))
    for part in parts:
        if part not in PARTS:
            raise ValueError(
                f"{where}: unknown part {part!r} in a marker; known parts: {', '.join(PARTS)}"
            )
    return parts


def _named(pattern, rest: str, where: str, kind: str) -> re.Match:
    match = pattern.match(rest)
    if match is None:
        raise ValueError(
            f"{where}: a {kind.lower()} marker must name its part, as in "
            f"'# BEGIN {kind} conv: <task>' and '# END {kind} conv'"
        )
    _known(match["part"], where)
    return match


def file_parts(text: str, source: str = "<text>") -> tuple[str, ...]:
    """The parts whose student copies leave this file out (its ``# FAST PATH FILE`` line), or ()."""
    found = FILE_MARKER.findall(text)
    if len(found) > 1:
        raise ValueError(f"{source}: more than one '# FAST PATH FILE' line")
    return _known(found[0], source) if found else ()


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
                raise ValueError(
                    f"{where}: BEGIN {begin['kind']} inside the region opened at line {open_region[1] + 1}"
                )
            named = _named(
                NAMED if begin["kind"] == "SOLUTION" else FAST_NAMED,
                begin["rest"],
                where,
                begin["kind"],
            )
            open_region = (named, number, begin["indent"], begin["kind"])
        elif end:
            part = _named(
                END_NAMED if end["kind"] == "SOLUTION" else FAST_NAMED,
                end["rest"],
                where,
                end["kind"],
            )["part"]
            if open_region is None or (_known(open_region[0]["part"], where), open_region[3]) != (
                _known(part, where),
                end["kind"],
            ):
                raise ValueError(
                    f"{where}: END {end['kind']} {part} does not close an open "
                    f"{end['kind'].lower()} region of part {part!r}"
                )
            named, start, indent, kind = open_region
            parts = _known(named["part"], where)
            regions.append(
                Region(
                    parts[0],
                    named.groupdict().get("task") or "not written yet",
                    indent,
                    start,
                    number,
                    fast_path=kind == "FAST PATH",
                    parts=parts if kind == "FAST PATH" else (),
                )
            )
            open_region = None
    if open_region:
        raise ValueError(
            f"{source}:{open_region[1] + 1}: BEGIN {open_region[3]} {open_region[0]['part']} "
            f"is never closed"
        )
    return regions


def render(text: str, regions: list[Region], include, notes: dict | None = None) -> str:
    """``text`` without marker lines; each solution region of a part in ``include`` replaced
    by ``raise NotImplementedError("<part>: <task><note>")`` at the region's indentation
    (``notes`` giving an optional suffix per part, such as the tutorial to read), each fast
    path of such a part dropped."""
    lines = text.splitlines(keepends=True)
    out, position = [], 0
    for region in regions:
        out.extend(lines[position : region.begin])
        if not region.taken_out_by(include):
            out.extend(lines[region.begin + 1 : region.end])
        elif not region.fast_path:  # (a fast path of an included part is dropped whole)
            message = f"{region.part}: {region.task}{(notes or {}).get(region.part, '')}"
            out.append(
                f"{region.indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})\n"
            )
        position = region.end + 1
    out.extend(lines[position:])
    return "".join(line for line in out if not FILE_MARKER.match(line))
