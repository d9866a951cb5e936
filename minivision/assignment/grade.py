"""Grade a copy of the package with the instructor's tests, part by part.

Each part runs in its own pytest subprocess, from a scratch folder made fresh for that run:
a copy of the instructor's ``tests/``, of the grading plugin (``pytest_grading.py``), and of
the copy's ``minivision`` package alone in a folder that starts ``PYTHONPATH`` (so nothing
else of the copy is importable, and it can shadow nothing: no ``pytest``, no
``sitecustomize``). ``import minivision`` is tried first, in a subprocess of its own. Each
subprocess has ``timeout`` seconds; one that runs out is killed with its whole process group
and costs its part all its points ("part iou timed out after 300 s"), never a hang. POSIX
only (process groups).

What the graded code can write is never read as a result: no report file, no output (read
for a message only), no exit status (read only to say that a run broke). The plugin, which
pytest imports before the graded package, sends each test's outcome as it is reported on a
socket that only the grader reads, each line beginning with a token that the graded code is
never given (see ``runner.py``). A part's score counts the tests that its node ids select
among those pytest collected: a test without a passing setup, call and teardown fails, a
test that never reported (the run exited, crashed or hung first) fails, and a node id that
selected nothing counts as one failed test. Records of other tests are ignored. A run during
which a file under ``tests/`` changed scores nothing.

The limit: the graded package runs inside the pytest process, with the rights of whoever
grades. Code written against the grading itself is not stopped there: replacing pytest's
reports or hooks, calling the plugin or reading its token from memory, patching the checks
the tests call (NumPy's, the tests' helpers) from inside a test, changing a test file and
restoring it between two checks, or reaching outside the process (other files, other
processes, a process that leaves the group with ``setsid``). Read the code of a copy whose
grade looks wrong, and grade copies you do not trust in a sandbox (a container) with nothing
else at stake.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from minivision.assignment import runner
from minivision.assignment.make import MANIFEST, PACKAGE, REPO_ROOT
from minivision.assignment.parts import PARTS, check_parts

PLUGIN = (
    "minivision_grading"  # pytest_grading.py, as copied beside the tests (importable from there)
)
PYTEST_FINISHED = (0, 1)  # all passed / some failed; anything else means the run itself broke
DEFAULT_TIMEOUT = (
    300.0  # seconds for one step; the slowest part (nms) takes about 30 s on 2 busy CPU cores
)
PROBE_MARK = "minivision imported from "
COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")


@dataclass
class PartScore:
    """One row of the score table; ``message`` is the first failure's one-line reason."""

    part: str
    passed: int
    total: int
    points: float
    max_points: int
    message: str = ""
    failures: dict = field(default_factory=dict)  # node id -> one-line reason, for each failed test


@dataclass
class Outcomes:
    """What one pytest run reported: the node ids it ``collected`` (and kept), the
    ``results`` of the tests that reported all their phases (node id -> (passed, message)),
    the ``collect_errors`` of test files (file node id -> message), and why the run
    ``broke``, if it did ("" otherwise)."""

    collected: list = field(default_factory=list)
    results: dict = field(default_factory=dict)
    collect_errors: dict = field(default_factory=dict)
    broke: str = ""


def _environment(package_root: Path) -> dict:
    """The subprocesses' environment: ``package_root`` (which holds the graded package and
    nothing else) first on PYTHONPATH, no bytecode written (so nothing legitimate adds files
    beside the tests), and no setting that would move sys.path or the bytecode cache."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONSAFEPATH", "PYTHONPYCACHEPREFIX")
    }
    env["PYTHONPATH"] = os.pathsep.join(
        [str(package_root)] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _check_timeout(timeout) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be a number of seconds, got {timeout!r} ({type(timeout).__name__})"
        )
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive, finite number of seconds, got {timeout!r}")
    return float(timeout)


def _stage(student: Path, repo: Path, into: Path) -> None:
    """The pristine files of every run: the graded package alone in ``package/``, the
    instructor's tests, and the plugin."""
    shutil.copytree(
        student / PACKAGE, into / "package" / PACKAGE
    )  # its __pycache__ too: Numba's compiled kernels
    shutil.copytree(repo / "tests", into / "tests", ignore=COPY_IGNORE)
    shutil.copy(Path(__file__).with_name("pytest_grading.py"), into / f"{PLUGIN}.py")


def _fresh(pristine: Path, run_dir: Path) -> Path:
    """``run_dir`` made anew from ``pristine``, whatever an earlier run did to it."""
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(pristine, run_dir)
    return run_dir


def _import_error(run_dir: Path, env: dict, timeout: float) -> str | None:
    """'' when the graded package imports (from ``run_dir/package``); else why not, in one
    line; None when the import ran out of time. The graded code runs here: whatever it does
    instead of finishing the import (exit early, change ``__file__``) fails every part."""
    probe = f"import minivision, sys; print('\\n{PROBE_MARK}' + minivision.__file__)"
    finished = runner.run([sys.executable, "-c", probe], env, run_dir, timeout)
    if finished.status is None:
        return None
    found = [
        line[len(PROBE_MARK) :]
        for line in finished.output.splitlines()
        if line.startswith(PROBE_MARK)
    ]
    if finished.status:
        why = _last_error(finished.output)
    elif not found:
        why = "import minivision exited (status 0) before it finished"
    elif (run_dir / "package").resolve() not in Path(found[-1]).resolve().parents:
        why = f"import minivision found {found[-1]}, not the graded copy"
    else:
        return ""
    return f"the package does not import: {why}"


def _last_error(output: str) -> str:
    """The last error pytest printed (an ``E   ...`` line, such as a collection's
    ImportError), else the last line of its output."""
    lines = output.strip().splitlines()
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    return (errors or lines or ["no output"])[-1]


def _message(record: dict) -> str:
    """A failed report's one-line reason: the first line of its exception message (or skip
    reason), else its last error line."""
    crash = (record.get("crash") or "").strip()
    return (
        crash.splitlines()[0]
        if crash
        else _last_error(record.get("text") or record.get("outcome", "failed"))
    )


def _outcomes(finished: runner.Finished) -> Outcomes:
    """A run's records as Outcomes: a test's result needs its teardown report, and passes
    only when every report of it passed; a change to the tests voids every result."""
    outcomes = Outcomes()
    reports, changed = {}, []
    for record in finished.records:
        event = record.get("event")
        if event == "collected":
            outcomes.collected = list(record["nodeids"])
        elif event == "collect_error":
            outcomes.collect_errors.setdefault(record["nodeid"], _message(record))
        elif event == "report":
            reports.setdefault(record["nodeid"], []).append(record)
        elif event == "changed":
            changed = record["files"]
    for node_id, phases in reports.items():
        if any(phase["when"] == "teardown" for phase in phases):
            failures = [_message(phase) for phase in phases if phase["outcome"] != "passed"]
            outcomes.results[node_id] = (not failures, failures[0] if failures else "")
    if changed:
        outcomes.results = {}
        outcomes.broke = f"the run changed the instructor's tests: {', '.join(changed[:3])}"
    elif finished.status not in PYTEST_FINISHED:
        outcomes.broke = (
            f"the test run broke (exit status {finished.status}): {_last_error(finished.output)}"
        )
    return outcomes


def _selects(node_id: str, test: str) -> bool:
    """Whether a part's node id selects a collected test: the same, or one of its
    parametrizations ('...::test_x' selects '...::test_x[cpu]')."""
    return test == node_id or test.startswith((node_id + "[", node_id + "::"))


def _score(part: str, outcomes: Outcomes) -> PartScore:
    """A part's row: the results of the collected tests its node ids select. A node id that
    selected nothing counts as one failed test, failed for its file's collection error if
    any; a selected test that never reported fails."""
    spec = PARTS[part]
    results = []  # (node id, passed, message)
    for node_id in spec.tests:
        selected = [test for test in dict.fromkeys(outcomes.collected) if _selects(node_id, test)]
        if not selected:
            module = node_id.split("::")[0]
            why = outcomes.collect_errors.get(module) or outcomes.broke or f"{node_id} did not run"
            results.append((node_id, False, why))
        results += [
            (
                test,
                *(
                    outcomes.results.get(test)
                    or (
                        False,
                        outcomes.broke
                        or f"{test} reported no result before the test process ended",
                    )
                ),
            )
            for test in selected
        ]
    passed = sum(ok for _, ok, _ in results)
    failures = {test: message for test, ok, message in results if not ok}
    points = round(spec.points * passed / len(results), 2)
    return PartScore(
        part, passed, len(results), points, spec.points, next(iter(failures.values()), ""), failures
    )


def _run_part(
    part: str, run_dir: Path, env: dict, pyproject: Path, timeout: float
) -> runner.Finished:
    """One part's tests in a pytest subprocess, its outcomes sent on the plugin's socket."""
    settings = (
        ["-c", str(pyproject)] if pyproject.exists() else []
    )  # the instructor's pytest settings (markers)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        *settings,
        "--rootdir",
        str(run_dir),
        "-p",
        "no:cacheprovider",
        "-p",
        PLUGIN,
        "--continue-on-collection-errors",
        "-m",
        "not gpu",
        *PARTS[part].tests,
    ]
    return runner.run(command, env, run_dir, timeout, channel=True)


def grade(
    student_dir, parts=None, repo_root=None, json_path=None, timeout: float = DEFAULT_TIMEOUT
) -> list[PartScore]:
    """Run the instructor's tests of each part against the package in ``student_dir``.

    Args:
        student_dir: a folder holding a ``minivision`` package (a student copy, or the
            instructor repository itself).
        parts: the parts to grade (names or "conv,pool"); default: those listed in the
            copy's ``assignment.json`` (written by ``make_student_copy``), else all parts.
            The copy is the student's to edit, manifest included: name the parts to
            grade against your own list.
        repo_root: the instructor repository whose ``tests/`` grade (default: this one).
        json_path: where to write the scores as JSON, if anywhere.
        timeout: seconds that ``import minivision``, and then each part's test run, may
            take; a part that runs out scores 0 ("part iou timed out after 300 s").
    Returns:
        one ``PartScore`` per part, in the order of ``parts``.
    """
    timeout = _check_timeout(timeout)
    student = Path(student_dir).resolve()
    repo = Path(repo_root).resolve() if repo_root else REPO_ROOT
    if not (student / PACKAGE / "__init__.py").exists():
        raise ValueError(
            f"{student} holds no minivision package (expected {student / PACKAGE / '__init__.py'})"
        )
    if parts is None:
        manifest = student / MANIFEST
        parts = json.loads(manifest.read_text())["parts"] if manifest.exists() else list(PARTS)
    parts = check_parts(parts)
    with tempfile.TemporaryDirectory(prefix="minivision-grade-", ignore_cleanup_errors=True) as tmp:
        pristine = Path(tmp, "pristine")
        _stage(student, repo, pristine)
        scores = _grade_parts(parts, pristine, Path(tmp, "run"), repo / "pyproject.toml", timeout)
    if json_path:
        write_json(scores, json_path)
    return scores


def _grade_parts(
    parts, pristine: Path, run_dir: Path, pyproject: Path, timeout: float
) -> list[PartScore]:
    """Try the import, then run each part, each from a fresh ``run_dir``."""
    env = _environment(run_dir / "package")
    why = _import_error(_fresh(pristine, run_dir), env, timeout)
    if why is None:
        return [
            _timed_out(_score(part, Outcomes()), timeout, ": import minivision did not finish")
            for part in parts
        ]
    if why:
        return [_score(part, Outcomes(broke=why)) for part in parts]
    scores = []
    for part in parts:
        finished = _run_part(part, _fresh(pristine, run_dir), env, pyproject, timeout)
        score = _score(part, _outcomes(finished))
        scores.append(score if finished.status is not None else _timed_out(score, timeout))
    return scores


def _timed_out(score: PartScore, timeout: float, why: str = "") -> PartScore:
    """``score`` with no points, for a part whose run (or import) ran out of time."""
    return replace(
        score, passed=0, points=0.0, message=f"part {score.part} timed out after {timeout:g} s{why}"
    )


def write_json(scores, path) -> None:
    """The scores as JSON: one object per part, and the total."""
    total = {
        "points": round(sum(s.points for s in scores), 2),
        "max_points": sum(s.max_points for s in scores),
    }
    data = {"parts": [asdict(score) for score in scores], "total": total}
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def score_table(scores) -> str:
    """The scores as a plain-text table (part, passed, total, points), a total row, and
    below it the first failure of each part that lost points."""
    rows = [("part", "passed", "total", "points")]
    rows += [(s.part, str(s.passed), str(s.total), f"{s.points:g}/{s.max_points}") for s in scores]
    rows.append(
        (
            "total",
            str(sum(s.passed for s in scores)),
            str(sum(s.total for s in scores)),
            f"{round(sum(s.points for s in scores), 2):g}/{sum(s.max_points for s in scores)}",
        )
    )
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    lines = [
        "  ".join(
            cell.ljust(w) if k == 0 else cell.rjust(w)
            for k, (cell, w) in enumerate(zip(row, widths))
        )
        for row in rows
    ]
    lines += [f"{s.part}: {s.message}" for s in scores if s.message]
    return "\n".join(lines)
