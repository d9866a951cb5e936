"""Grade a copy of the package with the instructor's tests, part by part.

The instructor's ``tests/`` are copied to a scratch folder and run by pytest in a
subprocess whose ``PYTHONPATH`` starts with the graded folder, so ``import minivision``
there finds the graded package and never the instructor's (the scratch folder holds no
package; the student copy holds no tests). A small plugin (``pytest_grading.py``) turns
off Hypothesis's shrinking: a grade needs pass or fail, not a minimal example. One pytest
run covers all parts; if it dies (a crash in a student's Numba kernel, say), each part is
run on its own so one crash costs only its part.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from minivision.assignment.make import MANIFEST, REPO_ROOT
from minivision.assignment.parts import PARTS, check_parts

PLUGIN = "minivision_grading"  # pytest_grading.py, as copied beside the tests (importable from there)
PYTEST_FINISHED = (0, 1)  # all passed / some failed; anything else means the run itself broke


@dataclass
class PartScore:
    """One row of the score table; ``message`` is the first failure's one-line reason."""

    part: str
    passed: int
    total: int
    points: float
    max_points: int
    message: str = ""


def _environment(student_dir: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(student_dir)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _import_error(student_dir: Path, env: dict, cwd: str) -> str:
    """'' when the graded package imports, from ``student_dir``; else why not, in one line."""
    probe = "import minivision, sys; sys.stdout.write(minivision.__file__)"
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=cwd, capture_output=True, text=True,
                            check=False)
    if result.returncode:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        return f"the package does not import: {lines[-1]}"
    where = Path(result.stdout.strip()).resolve()
    if student_dir.resolve() not in where.parents:
        raise ValueError(f"import minivision found {where}, not the package in {student_dir}")
    return ""


def _module(node_id: str) -> str:
    """'tests/a/test_b.py::test_c' -> 'tests.a.test_b', the module as junit names it."""
    return node_id.split("::")[0].removesuffix(".py").replace("/", ".")


def _selector_key(node_id: str) -> tuple[str, str]:
    """'tests/a/test_b.py::test_c[x]' -> ('tests.a.test_b', 'test_c[x]'): junit's
    classname (with any test class) and name."""
    names = node_id.split("::")[1:]
    return ".".join([_module(node_id)] + names[:-1]), names[-1]


def _matches(node_id: str, classname: str, name: str) -> bool:
    want_class, want_name = _selector_key(node_id)
    return classname == want_class and (name == want_name or name.startswith(want_name + "["))


def _last_error(output: str) -> str:
    """The last error pytest printed (an ``E   ...`` line, such as a collection's
    ImportError), else the last line of its output."""
    lines = output.strip().splitlines()
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    return (errors or lines or ["no output"])[-1]


def _run_tests(node_ids, env: dict, scratch: Path, pyproject: Path, timeout: float):
    """Run the tests; return (outcomes, why): outcomes maps (classname, name) to
    (passed, message), why says what broke when the run did not finish."""
    report = scratch / "report.xml"
    report.unlink(missing_ok=True)
    settings = ["-c", str(pyproject)] if pyproject.exists() else []  # the instructor's pytest settings (markers)
    command = [sys.executable, "-m", "pytest", "-q", *settings, "--rootdir", str(scratch), "-p", "no:cacheprovider",
               "-p", PLUGIN, "--continue-on-collection-errors", "-m", "not gpu", f"--junitxml={report}", *node_ids]
    try:
        result = subprocess.run(command, env=env, cwd=scratch, capture_output=True, text=True, timeout=timeout,
                                check=False)
    except subprocess.TimeoutExpired:
        return {}, f"the tests ran out of time ({timeout:.0f} s)"
    if result.returncode not in PYTEST_FINISHED or not report.exists():
        return {}, f"the test run broke (exit status {result.returncode}): {_last_error(result.stdout + result.stderr)}"
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        message = "" if problem is None else ((problem.get("message") or "").strip() or problem.tag).splitlines()[0]
        key = (case.get("classname", ""), case.get("name", ""))
        if key not in outcomes or outcomes[key][0]:  # a later error (in teardown) outranks a pass
            outcomes[key] = (problem is None, message)
    return outcomes, ""


def _score(part: str, outcomes: dict, why: str) -> PartScore:
    """A part's row: the results of the tests its node ids select. A node id that selected
    nothing counts as one failed test, failed for its module's collection error if any."""
    spec = PARTS[part]
    passed = total = 0
    messages = []
    for node_id in spec.tests:
        selected = [result for (cls, name), result in outcomes.items() if _matches(node_id, cls, name)]
        if not selected:
            selected = [outcomes.get(("", _module(node_id)), (False, why or f"{node_id} did not run"))]
        total += len(selected)
        passed += sum(ok for ok, _ in selected)
        messages += [message for ok, message in selected if not ok]
    points = round(spec.points * passed / total, 2)
    return PartScore(part, passed, total, points, spec.points, messages[0] if messages else "")


def grade(student_dir, parts=None, repo_root=None, json_path=None, timeout: float = 600) -> list[PartScore]:
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
        timeout: seconds one pytest run may take.
    Returns:
        one ``PartScore`` per part, in the order of ``parts``.
    """
    student = Path(student_dir).resolve()
    repo = Path(repo_root).resolve() if repo_root else REPO_ROOT
    if not (student / "minivision" / "__init__.py").exists():
        raise ValueError(f"{student} holds no minivision package (expected {student / 'minivision' / '__init__.py'})")
    if parts is None:
        manifest = student / MANIFEST
        parts = json.loads(manifest.read_text())["parts"] if manifest.exists() else list(PARTS)
    parts = check_parts(parts)
    env = _environment(student)
    with tempfile.TemporaryDirectory(prefix="minivision-grade-") as tmp:
        scratch = Path(tmp)
        shutil.copytree(repo / "tests", scratch / "tests",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache"))
        shutil.copy(Path(__file__).with_name("pytest_grading.py"), scratch / f"{PLUGIN}.py")
        why = _import_error(student, env, tmp)
        if why:
            scores = [_score(part, {}, why) for part in parts]
        else:
            run = partial(_run_tests, env=env, scratch=scratch, pyproject=repo / "pyproject.toml", timeout=timeout)
            outcomes, why = run([node_id for part in parts for node_id in PARTS[part].tests])
            if why and len(parts) > 1:
                scores = [_score(part, *run(PARTS[part].tests)) for part in parts]
            else:
                scores = [_score(part, outcomes, why) for part in parts]
    if json_path:
        write_json(scores, json_path)
    return scores


def write_json(scores, path) -> None:
    """The scores as JSON: one object per part, and the total."""
    total = {"points": round(sum(s.points for s in scores), 2), "max_points": sum(s.max_points for s in scores)}
    data = {"parts": [asdict(score) for score in scores], "total": total}
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def score_table(scores) -> str:
    """The scores as a plain-text table (part, passed, total, points), a total row, and
    below it the first failure of each part that lost points."""
    rows = [("part", "passed", "total", "points")]
    rows += [(s.part, str(s.passed), str(s.total), f"{s.points:g}/{s.max_points}") for s in scores]
    rows.append(("total", str(sum(s.passed for s in scores)), str(sum(s.total for s in scores)),
                 f"{round(sum(s.points for s in scores), 2):g}/{sum(s.max_points for s in scores)}"))
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    lines = ["  ".join(cell.ljust(w) if k == 0 else cell.rjust(w) for k, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines += [f"{s.part}: {s.message}" for s in scores if s.message]
    return "\n".join(lines)
