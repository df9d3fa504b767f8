"""Declared cases (course_lib.grading.Case, check_cases): the loop every hidden test of Labs 00 and 02 uses."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.grading import REAL_RTOL, AnswerError, Case, check_cases, named_together


def kv_bytes(layers, heads, bytes_per_elem=2):
    return 2 * layers * heads * bytes_per_elem


def test_right_answers_pass_exactly_or_to_the_real_tolerance():
    check_cases(kv_bytes, [Case((4, 2), 32), Case((4, 2), np.int64(32)), Case((1, 1, 1), 2).by_keyword("bytes_per_elem")])
    check_cases(lambda x: x * (1 + REAL_RTOL / 2), [Case((3.0,), 3.0)])
    with pytest.raises(AnswerError, match="expected 3"):
        check_cases(lambda x: x * (1 + 2 * REAL_RTOL), [Case((3.0,), 3.0)])
    with pytest.raises(AnswerError, match=r"returned 3, expected 4"):
        check_cases(lambda: 3, [Case((), 4)])


def test_a_wrong_answer_names_its_mistake_and_same_values_are_named_together():
    cases = [Case((4, 2), 32, {"bits instead of bytes": 256, "bytes as bits": 256, "no factor 2": 16,
                               "cannot show here": None})]
    with pytest.raises(AnswerError, match=r"(?s)<lambda>\(4, 2\) returned 256.*bits instead of bytes or bytes as bits"):
        check_cases(lambda layers, heads: 256, cases)
    assert named_together({"a": 1, "b": 1, "c": None, "d": 2}) == {"a or b": 1, "d": 2}
    with pytest.raises(AnswerError, match=r"(?s)kv_bytes\(4, 2\) returned 16.*Likely mistake: no factor 2"):
        check_cases(lambda layers, heads: 16, [Case((4, 2), 32, {"no factor 2": 16}, call="kv_bytes(4, 2)")])


def test_the_call_is_shown_as_written_with_its_note_and_keywords():
    case = Case((4, 2, 1), 16, note="one layer of a toy model").by_keyword("bytes_per_elem")
    assert case.args == (4, 2) and case.kwargs == {"bytes_per_elem": 1}
    with pytest.raises(AnswerError, match=r"^kv_bytes\(4, 2, bytes_per_elem=1\)  # one layer of a toy model returned"):
        check_cases(kv_bytes, [Case((4, 2, 1), 17, note="one layer of a toy model").by_keyword("bytes_per_elem")])


def test_an_error_the_case_names_becomes_its_mistake_and_others_pass_through():
    class NegativeSize(ValueError):
        pass

    def refuses_zero(n):
        if n <= 0:
            raise NegativeSize("sizes must be positive")
        return n

    with pytest.raises(AnswerError, match=r"(?s)refuses_zero\(0\) raised NegativeSize: .*zero is allowed"):
        check_cases(refuses_zero, [Case((0,), 0, errors={"ValueError": "zero is allowed and gives 0"})])
    with pytest.raises(NegativeSize):
        check_cases(refuses_zero, [Case((0,), 0)])
