"""How a failed check reads: the course's message without the checker's frames, and only named
mistakes the function can make (``generic=False``)."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient

from course_lib.grading import AnswerError, check_int, check_real, diagnose

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_generic_guesses_can_be_turned_off() -> None:
    # 2x too small reads as "forgot the factor 2 (K and V)" by default ...
    assert "factor 2" in (diagnose(50, 100) or "")
    # ... which is wrong for a function with no K/V factor: then only declared mistakes are named.
    assert diagnose(50, 100, generic=False) is None
    assert diagnose(50, 100, {"counted half the batch": 50}, generic=False) == "counted half the batch"
    assert diagnose(-3, 5, generic=False) is None and "negative" in (diagnose(-3, 5) or "")
    with pytest.raises(AnswerError) as err:
        check_int(50, 100, call="f()", generic=False)
    assert "Likely mistake" not in str(err.value)
    with pytest.raises(AnswerError) as err:
        check_real(0.5, 1.0, call="g()", rel=1e-9, generic=False)
    assert "Likely mistake" not in str(err.value)


def _run(cells: list[str]) -> list[nbformat.NotebookNode]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, timeout=120, allow_errors=True).execute()
    return nb.cells


def _error_text(cell: nbformat.NotebookNode) -> str:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert len(errors) == 1, cell.outputs
    return "\n".join(_ANSI.sub("", line) for line in errors[0].traceback)


def test_a_failed_check_in_a_notebook_shows_the_message_not_the_checker() -> None:
    cells = _run([
        "from course_lib.grading import check_int, expect_error\ndef f(x):\n    return x + 1",
        "check_int(f(3), 3, call='f(3)', mistakes={'added one': 4})",
        "expect_error(f, (1,), None, ValueError, 'negative sizes are invalid')",
        "def g(x):\n    return 1 / 0\ncheck_int(g(3), 3, call='g(3)')",
    ])
    failed_check = _error_text(cells[1])
    assert "AnswerError: f(3) returned 4, expected 3" in failed_check
    assert "Likely mistake: added one" in failed_check
    assert "check_int(f(3), 3" in failed_check  # the test's own line stays
    assert "grading.py" not in failed_check and "_message(" not in failed_check
    assert "grading.py" not in _error_text(cells[2])
    # The student's own error keeps its full traceback: that is where the bug is.
    crash = _error_text(cells[3])
    assert "ZeroDivisionError" in crash and "return 1 / 0" in crash
