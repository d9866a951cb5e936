"""docs/design.md's table of the lecture's ops names reference functions where they are, and
tests that exist."""

import ast
import re

from tests.helpers import REPO

REFERENCE_CELL = re.compile(r"`(\w+)` (\w+\.py):(\d+) \((\d+)\)")
TEST_CELL = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def _table_rows():
    text = (REPO / "docs" / "design.md").read_text()
    table = text[text.index("<!-- op table -->") : text.index("<!-- end op table -->")]
    return [line for line in table.splitlines()[3:] if line.startswith("| ")]  # past the header


def _functions(path):
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_the_op_table_gives_each_reference_functions_line_and_length():
    rows = _table_rows()
    assert len(rows) >= 12
    for row in rows:
        cells = REFERENCE_CELL.findall(row)
        assert cells, row
        for name, file, line, length in cells:
            node = _functions(REPO / "minivision" / "reference" / file)[name]
            assert (node.lineno, node.end_lineno - node.lineno + 1) == (int(line), int(length)), (
                name,
                file,
            )


def test_the_op_table_names_tests_that_exist():
    for row in _table_rows():
        tests = TEST_CELL.findall(row)
        assert tests, row
        for file, name in tests:
            path = REPO / file
            assert path.exists(), file
            assert not name or name in _functions(path), (file, name)
