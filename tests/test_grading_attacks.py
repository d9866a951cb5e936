"""Grading holds against the graded code: each copy gets the grade the instructor's tests say,
whatever it writes, prints, forks, deletes or sleeps on.

Most copies here are graded against a stand-in instructor repository: for each node id of
a part, a test that passes when the graded package's ``solve(node_id)`` answers "right".
A run takes seconds (the real tests import torch); two tests grade a real student copy,
made by ``make_student_copy``. Every count, point and file named is read from ``PARTS``.
"""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from minivision.assignment import PARTS, grade, make_student_copy, runner
from minivision.assignment.grade import Outcomes, _outcomes, _score
from minivision.assignment.make import REPO_ROOT, package_sources
from minivision.assignment.markers import find_regions
from tests.helpers import subprocess_env

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="the copies and checks here read /proc (Linux)"
)

FAST = {"MINIVISION_HYPOTHESIS_EXAMPLES": "5"}
SOLVE = """SOLVED = {solved!r}


def solve(node_id):
    return "right" if node_id in SOLVED else "wrong"
"""


def instructor_repo(root: Path, parts) -> Path:
    """A repository whose tests/ hold, for each node id of ``parts``, a test that asserts
    ``minivision.solve(<its node id>) == "right"``."""
    functions = {}  # (file, function) -> its parametrizations
    for part in parts:
        for node_id in PARTS[part].tests:
            file, test = node_id.split("::")
            name, _, case = test.partition("[")
            functions.setdefault((file, name), []).extend([case.rstrip("]")] if case else [])
    for (file, name), cases in functions.items():
        path = root / file
        for depth in range(
            1, len(Path(file).parts)
        ):  # tests/ and below are packages, as in the real tests
            folder = root.joinpath(*Path(file).parts[:depth])
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "__init__.py").touch()
        if not path.exists():
            path.write_text("import pytest\n\nimport minivision\n")
        marks = f"@pytest.mark.parametrize('case', {cases!r})\n" if cases else ""
        with open(path, "a") as f:
            f.write(
                f"\n\n{marks}def {name}(request{', case' if cases else ''}):\n"
                f"    assert minivision.solve(request.node.nodeid) == 'right'\n"
            )
    (root / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nmarkers = ["gpu: needs a GPU"]\n'
    )
    return root


def student_copy(root: Path, solved=(), attack="", files=None) -> Path:
    """A folder whose minivision package answers "right" for the node ids of the parts
    ``solved``, then runs ``attack``; ``files`` ({name: text}) go beside the package."""
    (root / "minivision").mkdir(parents=True)
    node_ids = tuple(node_id for part in solved for node_id in PARTS[part].tests)
    (root / "minivision" / "__init__.py").write_text(
        SOLVE.format(solved=node_ids) + textwrap.dedent(attack)
    )
    for name, text in (files or {}).items():
        (root / name).write_text(textwrap.dedent(text))
    return root


def points(scores):
    return {s.part: (s.passed, s.total, s.points) for s in scores}


def expected(part: str, passed: int) -> tuple:
    """(passed, total, points) of ``part`` in the stand-in repository (one test per node id)
    when ``passed`` of its tests pass, its points rounded as the grader rounds them."""
    total = len(PARTS[part].tests)
    return passed, total, round(PARTS[part].points * passed / total, 2)


def all_passed(part: str) -> tuple:
    """(passed, total, points) of ``part`` in the stand-in repository when all its tests pass."""
    return expected(part, len(PARTS[part].tests))


def files_of(part: str) -> list[str]:
    """The files that hold ``part``'s tests, in the order of its node ids."""
    return list(dict.fromkeys(node_id.split("::")[0] for node_id in PARTS[part].tests))


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not died (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_until_dead(pid: int, patience: float = 10.0) -> bool:
    """True once ``pid`` has died; False if it still lives after ``patience`` seconds."""
    end = time.monotonic() + patience
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.05)
    return not alive(pid)


@pytest.fixture
def repo(tmp_path):
    return instructor_repo(tmp_path / "instructor", ["iou", "sigmoid", "cross_entropy"])


# ----------------------------------------------------------------- the runner and the records
def test_only_lines_with_the_token_are_records():
    sender = textwrap.dedent("""
        import os
        fd = int(os.environ["MINIVISION_GRADING_FD"])
        token = os.read(fd, 64).strip()
        lines = [token + b' {"event": "real"}', b'{"event": "no token"}', b"0" * 32 + b' {"event": "guessed"}',
                 token + b' {"event": "cut sh', token + b' ["not an object"]', token + b' {"event": "last"}']
        os.write(fd, b"\\n".join(lines) + b"\\n")
        os.write(1, token + b' {"event": "on stdout"}\\n')
    """)
    finished = runner.run(
        [sys.executable, "-c", sender], dict(os.environ), os.getcwd(), 60, channel=True
    )
    assert finished.status == 0, finished.output
    assert finished.records == [{"event": "real"}, {"event": "last"}]


def test_a_timeout_kills_the_command_and_what_it_forked():
    hang = textwrap.dedent("""
        import os, time
        child = os.fork()
        if child:
            print("child", child, flush=True)
        time.sleep(10 ** 6)
    """)
    finished = runner.run([sys.executable, "-c", hang], dict(os.environ), os.getcwd(), 5)
    assert finished.status is None
    child = int(finished.output.split()[1])
    assert wait_until_dead(child), f"the forked process {child} outlived the timeout"


def test_a_command_that_exits_is_not_waited_for_through_what_it_forked():
    """A forked process keeps the socket and the output open: the run ends with the command anyway."""
    forks = textwrap.dedent("""
        import os, time
        child = os.fork()
        if not child:
            time.sleep(10 ** 6)
        print("child", child, flush=True)
    """)
    finished = runner.run(
        [sys.executable, "-c", forks], dict(os.environ), os.getcwd(), 120, channel=True
    )
    assert finished.status == 0, finished.output  # not None: it did not wait for the sleeping child
    assert wait_until_dead(int(finished.output.split()[1]))


def test_a_test_counts_once_all_its_phases_reported_and_only_if_collected():
    ids = list(PARTS["iou"].tests)

    def phases(node_id, teardown="passed", call="passed"):
        return [
            {"event": "report", "nodeid": node_id, "when": "setup", "outcome": "passed"},
            {
                "event": "report",
                "nodeid": node_id,
                "when": "call",
                "outcome": call,
                "crash": "AssertionError: no",
            },
            {
                "event": "report",
                "nodeid": node_id,
                "when": "teardown",
                "outcome": teardown,
                "text": "E   RuntimeError: teardown broke\nmore",
            },
        ][: 3 if teardown else 2]

    records = [
        {"event": "collected", "nodeids": ids[:2]},
        *phases(ids[0]),
        *phases(ids[1], teardown=None),
        *phases(ids[2]),
        *phases(ids[1] + "[forged]"),
    ]  # ids[2:] and the forged id were not collected
    outcomes = _outcomes(runner.Finished(0, "", records))
    assert outcomes.results[ids[0]] == (True, "") and ids[1] not in outcomes.results
    score = _score("iou", outcomes)
    assert (score.passed, score.total, score.points) == expected("iou", 1)
    assert score.message == f"{ids[1]} reported no result before the test process ended"
    assert score.failures == {
        ids[1]: score.message,
        **{node_id: f"{node_id} did not run" for node_id in ids[2:]},
    }
    failing = _outcomes(
        runner.Finished(1, "", [records[0], *phases(ids[0], teardown="failed", call="passed")])
    )
    assert failing.results[ids[0]] == (False, "RuntimeError: teardown broke")
    changed = _outcomes(
        runner.Finished(1, "", [*records, {"event": "changed", "files": ["tests/ops/x.py"]}])
    )
    assert (
        changed.results == {}
        and changed.broke == "the run changed the instructor's tests: tests/ops/x.py"
    )
    assert (
        _score("iou", Outcomes(collected=ids, results=dict.fromkeys(ids, (True, "")))).points
        == PARTS["iou"].points
    )


@pytest.mark.parametrize(
    "timeout, error, message",
    [
        (0, ValueError, "timeout must be a positive, finite number of seconds, got 0"),
        (float("inf"), ValueError, "timeout must be a positive, finite number of seconds, got inf"),
        ("5", TypeError, r"timeout must be a number of seconds, got '5' \(str\)"),
    ],
)
def test_bad_timeouts_are_refused(tmp_path, timeout, error, message):
    with pytest.raises(error, match=message):
        grade(tmp_path, parts="iou", timeout=timeout)


# ----------------------------------------------------------------- copies that cheat
def test_forged_records_fake_output_and_files_changed_at_exit_change_no_grade(tmp_path, repo):
    """Forged records on the grader's socket (found in /proc) and a fake pytest summary are
    ignored; what a run rewrites or deletes at exit (the next part's tests, its own package)
    is made fresh for the next run."""
    forge = """
        import atexit, json, os, shutil, sys
        environ = dict(v.split("=", 1) for v in open("/proc/self/environ").read().split("\\0") if "=" in v)
        if "MINIVISION_GRADING_FD" in environ:
            ids = [arg for arg in sys.argv if "::" in arg]
            records = [{"event": "collected", "nodeids": ids}] + [
                {"event": "report", "nodeid": i, "when": w, "outcome": "passed"} for i in ids
                for w in ("setup", "call", "teardown")]
            os.write(int(environ["MINIVISION_GRADING_FD"]), "".join(json.dumps(r) + "\\n" for r in records).encode())
            print(f"{'=' * 30} {len(ids)} passed in 0.01s {'=' * 30}")
    """
    rewrite = f"""
        def at_exit():
            for path in {files_of("iou")!r}:  # every test passes, for the next run
                with open(path) as f:
                    text = f.read()
                with open(path, "w") as f:
                    f.write(text.replace("== 'right'", "!= 'right'"))
            shutil.rmtree("package")
        atexit.register(at_exit)
    """
    student = student_copy(tmp_path / "student", solved=["sigmoid"], attack=forge + rewrite)
    scores = grade(student, parts="sigmoid,iou", repo_root=repo, timeout=120)
    assert points(scores) == {"sigmoid": all_passed("sigmoid"), "iou": expected("iou", 0)}
    assert scores[1].message == "AssertionError: assert 'wrong' == 'right'"


def test_a_test_file_changed_during_the_run_voids_it(tmp_path, repo):
    """cross_entropy's tests are in two files: the graded package, imported by the first,
    rewrites the second before pytest imports it."""
    files = files_of("cross_entropy")
    assert len(files) >= 2, f"cross_entropy's tests are all in {files}: pick a part in two files"
    attack = f"""
        import os
        if os.path.exists({files[1]!r}):
            with open({files[1]!r}) as f:
                text = f.read()
            with open({files[1]!r}, "w") as f:
                f.write(text.replace("== 'right'", "!= 'right'"))
    """
    scores = grade(
        student_copy(tmp_path / "student", attack=attack),
        parts="cross_entropy",
        repo_root=repo,
        timeout=120,
    )
    assert points(scores) == {"cross_entropy": expected("cross_entropy", 0)}
    assert scores[0].message == f"the run changed the instructor's tests: {files[1]}"


def test_exiting_with_status_0_in_the_middle_fails_the_tests_left(tmp_path, repo):
    attack = """
        import os
        calls = []
        right = solve

        def solve(node_id):
            calls.append(node_id)
            if len(calls) == 2:
                os._exit(0)
            return right(node_id)
    """
    scores = grade(
        student_copy(tmp_path / "student", solved=["iou"], attack=attack),
        parts="iou",
        repo_root=repo,
        timeout=120,
    )
    assert points(scores) == {"iou": expected("iou", 1)}
    second = PARTS["iou"].tests[1]
    assert scores[0].message == f"{second} reported no result before the test process ended"


def test_a_sitecustomize_beside_the_package_never_runs(tmp_path, repo):
    """Only the package is on the path: a sitecustomize.py (or pytest.py) beside it, which
    would run before the plugin and could take its token, is not imported."""
    forge = """
        import json, os
        if "MINIVISION_GRADING_FD" in os.environ:
            fd = int(os.environ["MINIVISION_GRADING_FD"])
            token = os.read(fd, 64).strip()
            ids = [a for a in open("/proc/self/cmdline", "rb").read().decode().split("\\0") if "::" in a]
            records = [{"event": "collected", "nodeids": ids}] + [
                {"event": "report", "nodeid": i, "when": w, "outcome": "passed"} for i in ids
                for w in ("setup", "call", "teardown")]
            os.write(fd, b"".join(token + b" " + json.dumps(r).encode() + b"\\n" for r in records))
            os._exit(0)
    """
    student = student_copy(tmp_path / "student", files={"sitecustomize.py": forge})
    scores = grade(student, parts="iou", repo_root=repo, timeout=120)
    assert points(scores) == {"iou": expected("iou", 0)}
    assert scores[0].message == "AssertionError: assert 'wrong' == 'right'"


def test_a_package_that_exits_while_importing_fails_every_part(tmp_path, repo):
    scores = grade(
        student_copy(tmp_path / "student", solved=["iou"], attack="import os\nos._exit(0)\n"),
        parts="iou,sigmoid",
        repo_root=repo,
        timeout=120,
    )
    assert points(scores) == {"iou": expected("iou", 0), "sigmoid": expected("sigmoid", 0)}
    assert (
        scores[0].message
        == "the package does not import: import minivision exited (status 0) before it finished"
    )


def test_a_part_that_hangs_times_out_alone_and_its_forks_die(tmp_path, repo):
    pid_file = tmp_path / "child.pid"
    attack = f"""
        import os, time
        right = solve

        def solve(node_id):
            if node_id in {PARTS["iou"].tests!r}:
                child = os.fork()
                if not child:
                    time.sleep(10 ** 6)
                with open({str(pid_file)!r}, "w") as f:
                    f.write(str(child))
                time.sleep(10 ** 6)
            return right(node_id)
    """
    student = student_copy(tmp_path / "student", solved=["iou", "sigmoid"], attack=attack)
    scores = grade(student, parts="iou,sigmoid", repo_root=repo, timeout=10)
    assert points(scores) == {"iou": expected("iou", 0), "sigmoid": all_passed("sigmoid")}
    assert scores[0].message == "part iou timed out after 10 s"
    assert wait_until_dead(int(pid_file.read_text()))


# ----------------------------------------------------------------- a real student copy (issue 15's attacks)
@pytest.fixture(scope="module")
def iou_copy(tmp_path_factory):
    """A student copy with the iou part taken out."""
    out = tmp_path_factory.mktemp("attacks") / "student"
    make_student_copy(out, ["iou"])
    return out


def solution_tasks(part: str) -> set[str]:
    """The tasks that ``part``'s solution regions in this repository state."""
    return {
        region.task
        for source in package_sources(REPO_ROOT)
        for region in find_regions((REPO_ROOT / source).read_text(), str(source))
        if region.part == part and not region.fast_path
    }


def cheating_copy(iou_copy: Path, where: Path, attack: str) -> Path:
    """``iou_copy`` with ``attack`` appended to its minivision/__init__.py."""
    copy = where / "student"
    copy.mkdir()
    for path in iou_copy.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            (copy / path.relative_to(iou_copy)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(iou_copy)).write_bytes(path.read_bytes())
    init = copy / "minivision" / "__init__.py"
    init.write_text(init.read_text() + textwrap.dedent(attack))
    return copy


def test_a_junit_report_rewritten_at_exit_changes_no_grade(iou_copy, tmp_path, monkeypatch):
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    attack = """
        import atexit as _atexit, re as _re, sys as _sys

        def _forge():  # every <testcase> emptied of its failure
            for arg in _sys.argv:
                if arg.startswith("--junitxml="):
                    path = arg.split("=", 1)[1]
                    with open(path) as f:
                        text = f.read()
                    text = _re.sub(r"<(failure|error|skipped)\\b.*?</\\1>|<(failure|error|skipped)\\b[^>]*/>", "", text,
                                   flags=_re.S)
                    with open(path, "w") as f:
                        f.write(_re.sub(r'(errors|failures|skipped)="\\d+"', r'\\1="0"', text))
        _atexit.register(_forge)
    """
    scores = grade(cheating_copy(iou_copy, tmp_path, attack), parts="iou", timeout=300)
    assert scores[0].total >= len(PARTS["iou"].tests)
    assert (scores[0].passed, scores[0].points) == (0, 0)
    assert len(scores[0].failures) == scores[0].total
    unwritten = tuple(f"NotImplementedError: iou: {task}" for task in solution_tasks("iou"))
    assert unwritten and scores[0].message.startswith(unwritten)
    assert all(message.startswith(unwritten) for message in scores[0].failures.values())


def test_a_package_that_hangs_on_import_times_out(iou_copy, tmp_path):
    """Through the command, as an instructor runs it: ``--timeout 5`` reaches each step."""
    copy = cheating_copy(iou_copy, tmp_path, "\nimport time\ntime.sleep(10 ** 6)\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "minivision",
            "assignment",
            "grade",
            str(copy),
            "--parts",
            "iou,sigmoid",
            "--timeout",
            "5",
        ],
        env=subprocess_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    iou, sigmoid = PARTS["iou"], PARTS["sigmoid"]
    tests, worth = len(iou.tests) + len(sigmoid.tests), iou.points + sigmoid.points
    assert [line.split() for line in lines[1:4]] == [
        ["iou", "0", str(len(iou.tests)), f"0/{iou.points}"],
        ["sigmoid", "0", str(len(sigmoid.tests)), f"0/{sigmoid.points}"],
        ["total", "0", str(tests), f"0/{worth}"],
    ]
    assert lines[4:] == [
        f"{part}: part {part} timed out after 5 s: import minivision did not finish"
        for part in ("iou", "sigmoid")
    ]
