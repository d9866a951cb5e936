"""Assignments from one source: markers, notebooks, and the round trip make -> grade.

The student copy is made and graded through the command, in subprocesses: the student
package is never imported into this process.
"""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minivision.assignment import PARTS, check_parts, grade, make_student_copy
from minivision.assignment.grade import Outcomes, _last_error, _score
from minivision.assignment.make import package_sources
from minivision.assignment.markers import find_regions, render
from minivision.assignment.notebook import percent_to_notebook
from tests.helpers import subprocess_env, torch_or_skip

REPO = Path(__file__).resolve().parents[1]
CHOSEN = ["conv", "pool", "nms", "roi", "relu"]  # numpy code, Numba kernels, CUDA twins; iou, softmax... stay solved
FAST = {"MINIVISION_HYPOTHESIS_EXAMPLES": "5"}  # the graded tests draw fewer examples


def run(*args, cwd):
    env = subprocess_env(**FAST)
    return subprocess.run([sys.executable, "-m", "minivision", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


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
    assert [(r.part, r.task) for r in regions] == [("relu", "write f"), ("sigmoid", "not written yet")]
    student = render(MARKED, regions, ["relu"], {"relu": " (see tutorial 09)"})
    assert "SOLUTION" not in student and "x + 1" not in student and "return 2 * x" in student
    assert '    raise NotImplementedError("relu: write f (see tutorial 09)")\n' in student
    namespace = {}
    exec(compile(student, "student", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="relu: write f"):
        namespace["f"](1)
    assert namespace["g"](2) == 4


def test_a_fast_path_is_dropped_with_its_part_and_kept_without_markers_otherwise():
    text = ('def f(x):\n    # BEGIN FAST PATH relu\n    if x == 2:\n        return "fast"\n    # END FAST PATH relu\n'
            '    # BEGIN SOLUTION relu: write f\n    return "slow"\n    # END SOLUTION relu\n')
    regions = find_regions(text)
    assert [(r.part, r.fast_path) for r in regions] == [("relu", True), ("relu", False)]
    taken_out, kept = render(text, regions, ["relu"]), render(text, regions, ["pool"])
    assert "fast" not in taken_out and 'raise NotImplementedError("relu: write f")' in taken_out
    namespace = {}
    exec(compile(kept, "kept", "exec"), namespace)
    assert "FAST PATH" not in kept and namespace["f"](2) == "fast" and namespace["f"](1) == "slow"


@pytest.mark.parametrize("text, message", [
    ("# BEGIN FAST PATH pool\n# END SOLUTION pool\n", r"<text>:2: END SOLUTION pool does not close an open solution"),
    ("# BEGIN FAST PATH\n", r"<text>:1: a fast path marker must name its part"),
    ("# BEGIN SOLUTION relu\n# BEGIN SOLUTION relu\n", r"<text>:2: BEGIN SOLUTION inside the region opened at line 1"),
    ("x = 1\n# BEGIN SOLUTION relu\n", r"<text>:2: BEGIN SOLUTION relu is never closed"),
    ("# BEGIN SOLUTION relu\n# END SOLUTION pool\n", r"<text>:2: END SOLUTION pool does not close"),
    ("# END SOLUTION relu\n", r"<text>:1: END SOLUTION relu does not close"),
    ("# BEGIN SOLUTION\n", r"<text>:1: a solution marker must name its part"),
    ("# BEGIN SOLUTION relux: typo\n", r"<text>:1: unknown part 'relux'.*known parts: conv, pool"),
])
def test_bad_markers_are_reported_with_their_line(text, message):
    with pytest.raises(ValueError, match=message):
        find_regions(text)


def test_percent_script_to_notebook():
    script = ('# ---\n# jupyter:\n#   jupytext: {}\n# ---\n\n# %% [markdown]\n# # Title\n# Some *text*.\n#\n# More.\n\n'
              '# %%\nimport numpy as np\n\nx = np.ones(2)\n\n# %% [markdown]\n# End\n')
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
    (repo / "minivision" / "__init__.py").write_text(MARKED + "\n\ndef h():\n    # BEGIN SOLUTION iou\n    return 0\n"
                                                     "    # END SOLUTION iou\n")
    (repo / "tutorials").mkdir()
    (repo / "tutorials" / "09_layers.py").write_text(
        "# %% [markdown]\n# Write f.\n\n# %%\n# BEGIN SOLUTION relu: in the notebook\nprint(1)\n# END SOLUTION relu\n")
    with caplog.at_level(logging.WARNING, logger="minivision.assignment.make"):
        summary = make_student_copy(tmp_path / "out", "relu,iou", repo_root=repo)
    assert "no tutorial 01_*.py" in caplog.text and "for part iou" in caplog.text
    assert summary["regions"] == [{"part": "relu", "file": "minivision/__init__.py", "line": 3},
                                  {"part": "iou", "file": "minivision/__init__.py", "line": 11}]
    assert (tmp_path / "out" / "minivision" / "__init__.py").read_text().splitlines()[10] == (
        '    raise NotImplementedError("iou: not written yet")')
    assert summary["notebooks"] == ["tutorials/09_layers.ipynb"]
    code = json.loads((tmp_path / "out" / "tutorials" / "09_layers.ipynb").read_text())["cells"][1]["source"]
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
    assert result.stderr.strip() == f"minivision: error: unknown assignment part 'cnv'; known parts: {known}"
    assert not (tmp_path / "out").exists()


def test_every_part_has_a_region_in_the_library():
    found = {r.part for path in package_sources(REPO) for r in find_regions((REPO / path).read_text(), str(path))}
    assert found == set(PARTS)


def test_scores_count_each_selected_test_and_name_the_first_failure():
    activation = "tests/functional/test_activation.py"
    match = f"{activation}::test_activations_match_torch[sigmoid-cpu]"
    relu = f"{activation}::test_activations_match_torch[relu-cpu]"  # another part's test
    outcomes = Outcomes(collected=[match, relu], results={match: (True, ""), relu: (False, "NotImplementedError")})
    score = _score("sigmoid", outcomes)
    assert (score.passed, score.total, score.points, score.max_points) == (1, 2, 2.5, 5)
    assert score.message == f"{activation}::test_activations_gradcheck[sigmoid] did not run"
    broken = _score("sigmoid", Outcomes(collect_errors={activation: "ImportError: no F"}))  # the file did not collect
    assert (broken.passed, broken.total, broken.message) == (0, 2, "ImportError: no F")
    assert _score("relu", Outcomes(broke="the test run broke (exit status -11)")).message.endswith("(exit status -11)")
    assert _last_error("collecting\nE   ImportError: cannot import x\n1 error") == "ImportError: cannot import x"


# ----------------------------------------------------------------- the round trip
@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A student copy with CHOSEN taken out, made by the command."""
    out = tmp_path_factory.mktemp("assignment") / "student"
    result = run("assignment", "make", str(out), "--include", ",".join(CHOSEN), cwd=out.parent)
    assert result.returncode == 0, result.stderr
    assert f"wrote a student copy of {', '.join(CHOSEN)} to {out}" in result.stdout
    return out


def test_student_copy_holds_sources_only_and_no_solution_text(student):
    files = {p.relative_to(student).as_posix() for p in student.rglob("*") if p.is_file()}
    assert {"README.md", "assignment.json", "pyproject.toml", "setup.py"} <= files
    assert not any("__pycache__" in f or f.startswith("minivision/assignment/") for f in files)
    assert all(f.endswith(".py") for f in files if f.startswith("minivision/"))
    assert all(f.endswith(".ipynb") for f in files if f.startswith("tutorials/"))
    for relative in package_sources(REPO):
        text = (REPO / relative).read_text()
        copy = (student / relative).read_text()
        assert not any(marker in copy for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN FAST PATH",
                                                     "END FAST PATH")), relative
        lines = text.splitlines()
        regions = find_regions(text, str(relative))
        inside = {n for r in regions for n in range(r.begin, r.end + 1)}
        outside = {lines[n].strip() for n in range(len(lines)) if n not in inside}
        copy_lines = {line.strip() for line in copy.splitlines()}
        for region in regions:
            body = [line.strip() for line in lines[region.begin + 1:region.end]]
            if region.part in CHOSEN:  # no line that only the solution (or the fast path) has survives
                assert not [line for line in body if line not in outside and line in copy_lines], (relative, region)
                assert region.fast_path or f'raise NotImplementedError("{region.part}: {region.task}' in copy
            else:
                assert "\n".join(lines[region.begin + 1:region.end]) in copy, (relative, region)
    manifest = json.loads((student / "assignment.json").read_text())
    assert manifest["parts"] == CHOSEN and {r["part"] for r in manifest["regions"]} == set(CHOSEN)
    for region in manifest["regions"]:  # each region's line in the copy is its raise
        line = (student / region["file"]).read_text().splitlines()[region["line"] - 1]
        assert line.strip().startswith(f'raise NotImplementedError("{region["part"]}: '), region
    for notebook in student.glob("tutorials/*.ipynb"):
        assert json.loads(notebook.read_text())["nbformat"] == 4


def test_student_copy_imports(student, tmp_path):
    modules = "minivision, minivision.functional, minivision.ops, minivision.nn, minivision.models, minivision.cli"
    result = subprocess.run([sys.executable, "-c", f"import {modules}; print(minivision.__file__)"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(student)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == student / "minivision" / "__init__.py"


ROI_KERNELS = """
import numpy as np
from minivision.ops import _roi_cuda, _roi_kernels
x, batch, bins = np.ones((1, 1, 2, 2)), np.zeros(1, np.int64), np.array([[[0, 2]]])
out, switches = np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1), np.int64)
for call in (lambda: _roi_kernels.roi_pool_rois(x, batch, bins, bins, -1.0, out, switches),
             lambda: _roi_kernels.roi_pool_backward_channels(out, switches, batch, np.zeros((1, 1, 4))),
             lambda: _roi_cuda.roi_pool(x, batch, bins, bins, -1.0, (1, 1)),
             lambda: _roi_cuda.roi_pool_backward(out, switches, batch, bins, bins, x.shape)):
    try:
        call()
        print("answered")
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}")
"""


def test_student_copy_has_no_working_roi_kernel_on_any_device(student, tmp_path):
    # the Numba kernels and their CUDA twins (whose source is taken out before CuPy is needed)
    result = subprocess.run([sys.executable, "-c", ROI_KERNELS], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(student)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("NotImplementedError: roi: write ") for line in lines), lines


def test_grading_the_student_copy_fails_every_chosen_part(student, tmp_path):
    torch_or_skip()  # the graded tests are PyTorch parity tests; without torch each part reports that instead
    report = tmp_path / "scores.json"
    result = run("assignment", "grade", str(student), "--json", str(report), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["part", "passed", "total", "points"]
    scores = json.loads(report.read_text())
    assert [s["part"] for s in scores["parts"]] == CHOSEN  # the parts the copy was made with
    for score in scores["parts"]:
        assert score["total"] > 0 and score["passed"] == 0 and score["points"] == 0, score
        assert score["message"].startswith(f"NotImplementedError: {score['part']}: write "), score
        assert f"{score['part']}: NotImplementedError: {score['part']}: write" in result.stdout
    assert scores["total"] == {"points": 0, "max_points": sum(PARTS[p].points for p in CHOSEN)}


def test_grading_the_instructor_copy_passes_every_part(monkeypatch):
    torch_or_skip()
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    scores = grade(REPO, parts=list(PARTS))
    assert [s.part for s in scores] == list(PARTS)
    failed = [s for s in scores if s.passed != s.total or s.points != s.max_points]
    assert not failed, failed
