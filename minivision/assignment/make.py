"""Write a student copy: the package with the chosen parts' solutions taken out, install
metadata, a README listing the parts, a manifest, and the matching tutorials as notebooks."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

from minivision.assignment.markers import file_parts, find_regions, render
from minivision.assignment.notebook import write_notebook
from minivision.assignment.parts import PARTS, check_parts

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "minivision"
TOOLING = Path(PACKAGE, "assignment")  # the instructor's side: not part of a student copy
METADATA_FILES = ("pyproject.toml", "setup.py")  # so that `pip install -e .` works in the copy
MANIFEST = "assignment.json"


def package_sources(repo_root: Path) -> list[Path]:
    """The package's ``.py`` files, relative to ``repo_root``: no caches (``__pycache__``
    holds bytecode and Numba's compiled kernels), no assignment tooling."""
    return sorted(
        path.relative_to(repo_root)
        for path in (repo_root / PACKAGE).rglob("*.py")
        if "__pycache__" not in path.parts and TOOLING not in path.relative_to(repo_root).parents
    )


def tutorials_for(parts, repo_root: Path) -> dict[str, list[Path]]:
    """Each part's tutorial scripts found in ``repo_root/tutorials``; a missing one is
    logged and skipped."""
    found = {}
    for part in parts:
        found[part] = []
        for number in PARTS[part].tutorials:
            matches = sorted((repo_root / "tutorials").glob(f"{number}_*.py"))
            if not matches:
                log.warning(
                    "no tutorial %s_*.py in %s for part %s; skipped",
                    number,
                    repo_root / "tutorials",
                    part,
                )
            found[part].extend(matches)
    return found


def _student_text(text: str, source: str, include, notes) -> tuple[str, list]:
    """(student text, regions) for one file; checks that the result is still valid Python."""
    regions = find_regions(text, source)
    student = render(text, regions, include, notes)
    try:
        compile(student, source, "exec")
    except SyntaxError as exc:
        raise ValueError(
            f"{source}: taking out the solution regions leaves invalid Python ({exc.msg}, "
            f"line {exc.lineno}); a region must be whole statements"
        ) from None
    return student, regions


def _module_name(relative: Path) -> str:
    """minivision/functional/_winograd.py -> minivision.functional._winograd"""
    return ".".join(relative.with_suffix("").parts).removesuffix(".__init__")


def imported_modules(text: str) -> set[str]:
    """Every module name an ``import`` in ``text`` could load: ``from a import b`` gives a and a.b."""
    names = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _check_no_import_of_dropped(pending, dropped: dict) -> None:
    """Raise ValueError when a file of the copy still imports a module the copy leaves out."""
    for relative, student in pending:
        for module in sorted(imported_modules(student) & set(dropped)):
            raise ValueError(
                f"{relative.as_posix()} imports {module}, which a copy without part "
                f"{dropped[module]} leaves out; put the import in a FAST PATH region"
            )


def _readme(parts, regions) -> str:
    lines = [
        "# minivision assignment",
        "",
        "Write the parts below where the package raises `NotImplementedError`.",
        "Install the copy with `pip install -e .` (or put this folder on `PYTHONPATH`), check your layers",
        "with `mv.gradcheck`, and open the notebooks in `tutorials/`.",
        "",
        "| part | points | where |",
        "|---|---|---|",
    ]
    for part in parts:
        places = ", ".join(f"`{r['file']}` line {r['line']}" for r in regions if r["part"] == part)
        lines.append(f"| {part} | {PARTS[part].points} | {places} |")
    return "\n".join(lines) + "\n"


def make_student_copy(out_dir, include, repo_root=None) -> dict:
    """Write a student copy of the package to ``out_dir`` (which must not exist or be empty).

    Args:
        out_dir: where to write.
        include: the parts to take out (names from ``PARTS``, a list or "conv,pool").
        repo_root: the instructor repository (default: the one this package lives in).
    Returns:
        a summary: ``parts``, ``regions`` (part, file, line of each taken-out region in the
        copy) and the ``notebooks`` written.
    """
    parts = check_parts(include)
    repo = Path(repo_root) if repo_root else REPO_ROOT
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder; choose a new one")
    tutorials = tutorials_for(parts, repo)
    notes = {
        part: f" (see tutorial {', '.join(path.stem for path in paths)})"
        for part, paths in tutorials.items()
        if paths
    }

    regions, pending, dropped = [], [], {}
    for relative in package_sources(repo):
        text = (repo / relative).read_text(encoding="utf-8")
        taken_by = [part for part in file_parts(text, relative.as_posix()) if part in parts]
        if taken_by:  # a fast-path module of a part taken out: not in the copy at all
            dropped[_module_name(relative)] = taken_by[0]
            continue
        student, found = _student_text(text, relative.as_posix(), parts, notes)
        pending.append((relative, student))
        # line numbers in the copy: each removed region shrinks the file above the next one
        shift = 0
        for region in found:
            if not region.taken_out_by(parts):
                shift += 2  # the markers
            elif region.fast_path:
                shift += region.end - region.begin + 1  # dropped whole
            else:
                regions.append(
                    {
                        "part": region.part,
                        "file": relative.as_posix(),
                        "line": region.begin + 1 - shift,
                    }
                )
                shift += region.end - region.begin
    regions.sort(key=lambda region: parts.index(region["part"]))  # stable: file order within a part
    _check_no_import_of_dropped(pending, dropped)
    missing = [part for part in parts if not any(r["part"] == part for r in regions)]
    if missing:
        raise ValueError(
            f"no solution region is marked for part {', '.join(missing)} in {repo / PACKAGE}"
        )
    scripts = {
        f"tutorials/{path.stem}.ipynb": _student_text(
            path.read_text(encoding="utf-8"), f"tutorials/{path.name}", parts, notes
        )[0]
        for paths in tutorials.values()
        for path in paths
    }

    # everything is checked: now write
    for relative, student in pending:
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_text(student, encoding="utf-8")
    for name in METADATA_FILES:
        if (repo / name).exists():
            (out / name).write_text((repo / name).read_text(encoding="utf-8"), encoding="utf-8")
    (out / "README.md").write_text(_readme(parts, regions), encoding="utf-8")
    with open(out / MANIFEST, "w", encoding="utf-8") as f:
        json.dump({"parts": parts, "regions": regions}, f, indent=1)
    for notebook, text in scripts.items():
        (out / notebook).parent.mkdir(exist_ok=True)
        write_notebook(text, out / notebook)
    return {"parts": parts, "regions": regions, "notebooks": list(scripts)}
