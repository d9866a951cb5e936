"""Assignments from one source: markers, notebooks, and the round trip make -> grade.

The student copy is made and graded through the command, in subprocesses: the student
package is never imported into this process.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from minivision.assignment import PARTS, check_parts, make_student_copy
from minivision.assignment.grade import Outcomes, _last_error, _score
from minivision.assignment.make import package_sources
from minivision.assignment.markers import file_parts, find_regions, render
from minivision.assignment.notebook import percent_to_notebook
from tests.helpers import subprocess_env, torch_or_skip

REPO = Path(__file__).resolve().parents[1]
CHOSEN = list(PARTS)  # every part taken out of one copy
FAST = {
    "MINIVISION_HYPOTHESIS_EXAMPLES": "5",
    "MINIVISION_HYPOTHESIS_SHRINK": "0",
}  # fewer examples, no shrinking


def run(*args, cwd):
    env = subprocess_env(**FAST)
    return subprocess.run(
        [sys.executable, "-m", "minivision", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# ----------------------------------------------------------------- markers and notebooks
MARKED = '''def f(x):
    """Doc."""
    # BEGIN SOLUTION relu: write f
    y = x + 1
    return y
    # END SOLUTION relu


def g(x):
    # BEGIN SOLUTION sigmoid
    return 2 * x
    # END SOLUTION sigmoid
'''


def test_render_replaces_chosen_regions_and_drops_every_marker():
    regions = find_regions(MARKED)
    assert [(r.part, r.task) for r in regions] == [
        ("relu", "write f"),
        ("sigmoid", "not written yet"),
    ]
    student = render(MARKED, regions, ["relu"], {"relu": " (see tutorial 09)"})
    assert "SOLUTION" not in student and "x + 1" not in student and "return 2 * x" in student
    assert '    raise NotImplementedError("relu: write f (see tutorial 09)")\n' in student
    namespace = {}
    exec(compile(student, "student", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="relu: write f"):
        namespace["f"](1)
    assert namespace["g"](2) == 4


def test_a_fast_path_is_dropped_with_its_part_and_kept_without_markers_otherwise():
    text = (
        'def f(x):\n    # BEGIN FAST PATH relu\n    if x == 2:\n        return "fast"\n    # END FAST PATH relu\n'
        '    # BEGIN SOLUTION relu: write f\n    return "slow"\n    # END SOLUTION relu\n'
    )
    regions = find_regions(text)
    assert [(r.part, r.fast_path) for r in regions] == [("relu", True), ("relu", False)]
    taken_out, kept = render(text, regions, ["relu"]), render(text, regions, ["pool"])
    assert "fast" not in taken_out and 'raise NotImplementedError("relu: write f")' in taken_out
    namespace = {}
    exec(compile(kept, "kept", "exec"), namespace)
    assert "FAST PATH" not in kept and namespace["f"](2) == "fast" and namespace["f"](1) == "slow"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "# BEGIN FAST PATH pool\n# END SOLUTION pool\n",
            r"<text>:2: END SOLUTION pool does not close an open solution",
        ),
        ("# BEGIN FAST PATH\n", r"<text>:1: a fast path marker must name its part"),
        (
            "# BEGIN SOLUTION relu\n# BEGIN SOLUTION relu\n",
            r"<text>:2: BEGIN SOLUTION inside the region opened at line 1",
        ),
        ("x = 1\n# BEGIN SOLUTION relu\n", r"<text>:2: BEGIN SOLUTION relu is never closed"),
        (
            "# BEGIN SOLUTION relu\n# END SOLUTION pool\n",
            r"<text>:2: END SOLUTION pool does not close",
        ),
        ("# END SOLUTION relu\n", r"<text>:1: END SOLUTION relu does not close"),
        ("# BEGIN SOLUTION\n", r"<text>:1: a solution marker must name its part"),
        (
            "# BEGIN SOLUTION relux: typo\n",
            r"<text>:1: unknown part 'relux'.*known parts: conv, pool",
        ),
    ],
)
def test_bad_markers_are_reported_with_their_line(text, message):
    with pytest.raises(ValueError, match=message):
        find_regions(text)


def test_percent_script_to_notebook():
    script = (
        "# ---\n# jupyter:\n#   jupytext: {}\n# ---\n\n# %% [markdown]\n# # Title\n# Some *text*.\n#\n# More.\n\n"
        "# %%\nimport numpy as np\n\nx = np.ones(2)\n\n# %% [markdown]\n# End\n"
    )
    notebook = percent_to_notebook(script)
    assert notebook["nbformat"] == 4 and notebook["metadata"]["kernelspec"]["name"] == "python3"
    cells = notebook["cells"]
    assert [c["cell_type"] for c in cells] == ["markdown", "code", "markdown"]
    assert "".join(cells[0]["source"]) == "# Title\nSome *text*.\n\nMore."
    assert cells[1]["source"] == ["import numpy as np\n", "\n", "x = np.ones(2)"]
    assert cells[1]["outputs"] == [] and cells[1]["execution_count"] is None
    assert len({c["id"] for c in cells}) == 3
    json.dumps(notebook)


def test_make_takes_regions_out_of_tutorials_and_warns_about_missing_ones(tmp_path, caplog):
    repo = tmp_path / "repo"
    (repo / "minivision").mkdir(parents=True)
    (repo / "minivision" / "__init__.py").write_text(
        MARKED + "\n\ndef h():\n    # BEGIN SOLUTION iou\n    return 0\n    # END SOLUTION iou\n"
    )
    (repo / "tutorials").mkdir()
    (repo / "tutorials" / "09_layers.py").write_text(
        "# %% [markdown]\n# Write f.\n\n# %%\n# BEGIN SOLUTION relu: in the notebook\nprint(1)\n# END SOLUTION relu\n"
    )
    with caplog.at_level(logging.WARNING, logger="minivision.assignment.make"):
        summary = make_student_copy(tmp_path / "out", "relu,iou", repo_root=repo)
    assert "no tutorial 01_*.py" in caplog.text and "for part iou" in caplog.text
    assert summary["regions"] == [
        {"part": "relu", "file": "minivision/__init__.py", "line": 3},
        {"part": "iou", "file": "minivision/__init__.py", "line": 11},
    ]
    assert (tmp_path / "out" / "minivision" / "__init__.py").read_text().splitlines()[10] == (
        '    raise NotImplementedError("iou: not written yet")'
    )
    assert summary["notebooks"] == ["tutorials/09_layers.ipynb"]
    code = json.loads((tmp_path / "out" / "tutorials" / "09_layers.ipynb").read_text())["cells"][1][
        "source"
    ]
    assert code == ['raise NotImplementedError("relu: in the notebook (see tutorial 09_layers)")']


def test_make_refuses_a_part_without_regions_and_a_used_folder(tmp_path):
    repo = tmp_path / "repo"
    (repo / "minivision").mkdir(parents=True)
    (repo / "minivision" / "__init__.py").write_text(MARKED)
    with pytest.raises(ValueError, match="no solution region is marked for part conv"):
        make_student_copy(tmp_path / "out", ["conv"], repo_root=repo)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("")
    with pytest.raises(ValueError, match="already exists and is not an empty folder"):
        make_student_copy(tmp_path / "used", ["relu"], repo_root=repo)


def test_unknown_parts_are_named_with_the_known_ones(tmp_path):
    known = ", ".join(PARTS)
    with pytest.raises(ValueError, match=f"unknown assignment part 'cnv'; known parts: {known}"):
        check_parts("conv,cnv")
    assert check_parts(" pool, conv,pool ") == ["pool", "conv"]
    result = run("assignment", "make", str(tmp_path / "out"), "--include", "conv,cnv", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        == f"minivision: error: unknown assignment part 'cnv'; known parts: {known}"
    )
    assert not (tmp_path / "out").exists()


def test_every_part_has_a_region_in_the_library():
    found = {
        r.part
        for path in package_sources(REPO)
        for r in find_regions((REPO / path).read_text(), str(path))
    }
    assert found == set(PARTS)


def test_scores_count_each_selected_test_and_name_the_first_failure():
    tests = PARTS["sigmoid"].tests  # one module's tests, at least three
    other = PARTS["relu"].tests[0]  # another part's test
    outcomes = Outcomes(
        collected=[tests[0], other],
        results={tests[0]: (True, ""), other: (False, "NotImplementedError")},
    )
    score = _score("sigmoid", outcomes)
    assert (score.passed, score.total, score.max_points) == (1, len(tests), 5)
    assert score.points == round(5 / len(tests), 2)
    assert score.message == f"{tests[1]} did not run"
    assert score.failures == {test: f"{test} did not run" for test in tests[1:]}
    module = tests[0].split("::")[0]
    broken = _score(
        "sigmoid", Outcomes(collect_errors={module: "ImportError: no F"})
    )  # the file did not collect
    assert (broken.passed, broken.total, broken.message) == (0, len(tests), "ImportError: no F")
    assert _score("relu", Outcomes(broke="the test run broke (exit status -11)")).message.endswith(
        "(exit status -11)"
    )
    assert (
        _last_error("collecting\nE   ImportError: cannot import x\n1 error")
        == "ImportError: cannot import x"
    )


# ----------------------------------------------------------------- the round trip
@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A student copy with every part taken out, made by the command."""
    out = tmp_path_factory.mktemp("assignment") / "student"
    result = run("assignment", "make", str(out), "--include", ",".join(CHOSEN), cwd=out.parent)
    assert result.returncode == 0, result.stderr
    assert f"wrote a student copy of {', '.join(CHOSEN)} to {out}" in result.stdout
    return out


def _left_out(relative: Path) -> bool:
    """Whether a student copy of CHOSEN leaves this package file out (a fast path of a chosen part)."""
    return bool(set(file_parts((REPO / relative).read_text(), str(relative))) & set(CHOSEN))


def test_every_solution_region_is_in_the_reference():
    for relative in package_sources(REPO):
        regions = find_regions((REPO / relative).read_text(), str(relative))
        solutions = [region for region in regions if not region.fast_path]
        assert not solutions or relative.parts[:2] == ("minivision", "reference"), (
            relative,
            solutions[0],
        )


def test_student_copy_holds_sources_only_and_no_solution_text(student):
    files = {p.relative_to(student).as_posix() for p in student.rglob("*") if p.is_file()}
    assert {"README.md", "assignment.json", "pyproject.toml", "setup.py"} <= files
    assert not any("__pycache__" in f or f.startswith("minivision/assignment/") for f in files)
    assert all(f.endswith(".py") for f in files if f.startswith("minivision/"))
    assert all(f.endswith(".ipynb") for f in files if f.startswith("tutorials/"))
    for relative in package_sources(REPO):
        if _left_out(relative):
            assert not (student / relative).exists(), relative
            continue
        text = (REPO / relative).read_text()
        copy = (student / relative).read_text()
        assert not any(
            marker in copy
            for marker in (
                "BEGIN SOLUTION",
                "END SOLUTION",
                "BEGIN FAST PATH",
                "END FAST PATH",
                "FAST PATH FILE",
            )
        ), relative
        lines = text.splitlines()
        regions = find_regions(text, str(relative))
        inside = {n for r in regions for n in range(r.begin, r.end + 1)}
        outside = {lines[n].strip() for n in range(len(lines)) if n not in inside}
        copy_lines = {line.strip() for line in copy.splitlines()}
        for region in regions:
            body = [line.strip() for line in lines[region.begin + 1 : region.end]]
            assert region.taken_out_by(CHOSEN)
            # no line that only the solution (or the fast path) has survives
            assert not [line for line in body if line not in outside and line in copy_lines], (
                relative,
                region,
            )
            assert (
                region.fast_path
                or f'raise NotImplementedError("{region.part}: {region.task}' in copy
            )
    manifest = json.loads((student / "assignment.json").read_text())
    assert manifest["parts"] == CHOSEN and {r["part"] for r in manifest["regions"]} == set(CHOSEN)
    for region in manifest["regions"]:  # each region's line in the copy is its raise
        line = (student / region["file"]).read_text().splitlines()[region["line"] - 1]
        assert line.strip().startswith(f'raise NotImplementedError("{region["part"]}: '), region
    for notebook in student.glob("tutorials/*.ipynb"):
        assert json.loads(notebook.read_text())["nbformat"] == 4


def test_a_copy_without_a_part_leaves_out_every_fast_path_module_of_it(tmp_path):
    for part in ("conv", "pool", "nms", "roi", "relu"):
        make_student_copy(tmp_path / part, part)
        kernels = {
            relative
            for relative in package_sources(REPO)
            if part in file_parts((REPO / relative).read_text(), str(relative))
        }
        assert kernels, part  # each of these parts has a fast path of its own
        assert not [relative for relative in kernels if (tmp_path / part / relative).exists()], part


def test_make_refuses_a_copy_that_imports_a_module_it_leaves_out(tmp_path):
    repo = tmp_path / "repo"
    (repo / "minivision").mkdir(parents=True)
    (repo / "minivision" / "__init__.py").write_text("from minivision import _fast\n" + MARKED)
    (repo / "minivision" / "_fast.py").write_text('"""Kernels."""\n# FAST PATH FILE relu, pool\n')
    with pytest.raises(
        ValueError,
        match=r"minivision/__init__.py imports minivision._fast, which a copy without "
        r"part relu leaves out; put the import in a FAST PATH region",
    ):
        make_student_copy(tmp_path / "out", "relu", repo_root=repo)
    assert not (tmp_path / "out").exists()
    make_student_copy(tmp_path / "kept", "sigmoid", repo_root=repo)  # kept: without its marker line
    assert (tmp_path / "kept" / "minivision" / "_fast.py").read_text() == '"""Kernels."""\n'


def test_a_fast_path_region_of_several_parts_goes_with_any_of_them():
    text = "# BEGIN FAST PATH iou, nms\nfast = True\n# END FAST PATH iou, nms\n"
    regions = find_regions(text)
    assert regions[0].parts == ("iou", "nms")
    assert "fast" not in render(text, regions, ["nms"]) and "fast" not in render(
        text, regions, ["iou"]
    )
    assert render(text, regions, ["pool"]) == "fast = True\n"


def test_student_copy_imports(student, tmp_path):
    modules = "minivision, minivision.functional, minivision.ops, minivision.nn, minivision.models, minivision.cli"
    result = subprocess.run(
        [sys.executable, "-c", f"import {modules}; print(minivision.__file__)"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(student)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == student / "minivision" / "__init__.py"


EVERY_PART = """
import numpy as np
import minivision as mv
from minivision import functional as F, ops

mv.use_reference(False)  # the fast paths, were any left
rng = np.random.default_rng(0)
x = mv.tensor(rng.normal(size=(1, 2, 6, 6)).astype(np.float32), requires_grad=True)  # what the kernels take
boxes = mv.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 5.0, 5.0]])
calls = {
    "conv": lambda: F.conv2d(x, mv.randn(3, 2, 3, 3)),
    "pool": lambda: F.max_pool2d(x, 2),
    "iou": lambda: ops.box_iou(boxes, boxes),
    "nms": lambda: ops.nms(boxes, mv.tensor([0.9, 0.8]), 0.5),
    "roi": lambda: ops.roi_pool(x, mv.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]]), 2),
    "relu": lambda: F.relu(x).sum().backward(),
    "sigmoid": lambda: F.sigmoid(x).sum().backward(),
    "softmax": lambda: (F.softmax(x, dim=1) * mv.randn(1, 2, 6, 6)).sum().backward(),
    "cross_entropy": lambda: F.cross_entropy(x.reshape(2, 36), mv.tensor([1, 3])).backward(),
}
for part, call in calls.items():
    try:
        call()
        print(part, "answered")
    except NotImplementedError as exc:
        print(part, str(exc).split(":")[0])
"""


def test_every_part_runs_the_students_code_whatever_the_switch_says(student, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", EVERY_PART],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(student)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    answers = dict(line.split() for line in result.stdout.splitlines())
    assert answers == {
        part: part for part in CHOSEN
    }  # each part's call raised its own NotImplementedError


def _failures(copy: Path, node_ids, tmp_path: Path) -> dict:
    """{test: failure message or ""} of the instructor's tests ``node_ids`` run in one pytest
    process against ``copy``'s package, staged as the grader stages it (the package alone on
    PYTHONPATH, a copy of tests/ beside it)."""
    shutil.copytree(copy / "minivision", tmp_path / "package" / "minivision")
    shutil.copytree(
        REPO / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__")
    )
    report = tmp_path / "report.xml"
    env = {**os.environ, **FAST, "PYTHONPATH": str(tmp_path / "package")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(REPO / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            "-m",
            "not gpu",
            f"--junitxml={report}",
            *node_ids,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        test = case.get("classname").replace(".", "/") + ".py::" + case.get("name")
        failed = case.find("failure") if case.find("failure") is not None else case.find("error")
        outcomes[test] = "" if failed is None else failed.get("message", "")
    return outcomes


def test_every_graded_test_fails_in_the_student_copy_with_its_parts_message(student, tmp_path):
    torch_or_skip()  # the graded tests are PyTorch parity tests; without torch they skip
    outcomes = _failures(student, [test for part in CHOSEN for test in PARTS[part].tests], tmp_path)
    for part in CHOSEN:
        for node_id in PARTS[part].tests:
            selected = {
                test: message
                for test, message in outcomes.items()
                if test == node_id or test.startswith(node_id + "[")
            }
            assert selected, node_id
            for test, message in selected.items():
                assert message.startswith(f"NotImplementedError: {part}: write "), (test, message)


def _fill_in(copy: Path) -> None:
    """Write the instructor's solutions back into a student copy, as a student who solved every part would."""
    manifest = json.loads((copy / "assignment.json").read_text())
    for file in {region["file"] for region in manifest["regions"]}:
        source = (REPO / file).read_text().splitlines(keepends=True)
        solutions = [
            region for region in find_regions("".join(source), file) if not region.fast_path
        ]
        lines = (copy / file).read_text().splitlines(keepends=True)
        raises = sorted(region["line"] for region in manifest["regions"] if region["file"] == file)
        assert len(raises) == len(solutions), file
        for line, region in reversed(list(zip(raises, solutions))):
            lines[line - 1 : line] = source[region.begin + 1 : region.end]
        (copy / file).write_text("".join(lines))


def test_grading_a_filled_in_copy_gives_every_point(tmp_path):
    torch_or_skip()
    make_student_copy(tmp_path / "copy", CHOSEN)
    _fill_in(tmp_path / "copy")
    report = tmp_path / "scores.json"
    result = run("assignment", "grade", str(tmp_path / "copy"), "--json", str(report), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["part", "passed", "total", "points"]
    scores = json.loads(report.read_text())
    assert [s["part"] for s in scores["parts"]] == CHOSEN  # the parts in the copy's manifest
    failed = [
        s for s in scores["parts"] if s["passed"] != s["total"] or s["points"] != s["max_points"]
    ]
    assert not failed, failed
    assert scores["total"] == {
        "points": sum(PARTS[p].points for p in CHOSEN),
        "max_points": sum(PARTS[p].points for p in CHOSEN),
    }
