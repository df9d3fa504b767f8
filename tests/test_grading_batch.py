"""tools/grading_batch.py: one gradebook engine per URL and one metadata validator per schema
inside a grading batch; nbgrader exactly as shipped outside one; the same data and errors."""

from __future__ import annotations

import copy

import jsonschema
import nbformat
import pytest
from nbgrader.api import Course, Gradebook
from nbgrader.nbgraderformat import MetadataValidator, ValidationError
from nbgrader.preprocessors import CheckCellMetadata

from tools import grading_batch
from tools.grading_batch import grading_batch as batch

ORIGINAL_INIT = Gradebook.__init__
ORIGINAL_CLOSE = Gradebook.close


@pytest.fixture
def url(tmp_path):
    return "sqlite:///" + str(tmp_path / "gradebook.db")


def test_one_engine_per_url_and_a_session_each(url, tmp_path):
    other = "sqlite:///" + str(tmp_path / "other.db")
    with batch():
        with Gradebook(url) as a, Gradebook(url) as b, Gradebook(other) as c:
            assert a.engine is b.engine
            assert c.engine is not a.engine
            assert a.db is not b.db  # each gradebook its own session
        kept = grading_batch.engines()
        assert set(kept) == {url, other}
        with Gradebook(url) as again:  # after close: still the batch's engine
            assert again.engine is kept[url]
    assert grading_batch.engines() == {}
    assert not grading_batch.active()
    with Gradebook(url) as outside:
        assert outside.engine is not kept[url]


def test_writes_are_committed_and_seen_everywhere(url):
    with batch():
        with Gradebook(url) as gb:  # the first open of a new database creates nbgrader's tables
            gb.add_assignment("lab")
            gb.add_student("s1", first_name="Ada")
        with Gradebook(url) as gb:
            assert gb.find_student("s1").first_name == "Ada"
            gb.update_or_create_student("s1", first_name="Grace")
    with Gradebook(url) as gb:  # a gradebook outside the batch, on a new connection
        assert gb.find_student("s1").first_name == "Grace"
        assert [a.name for a in gb.assignments] == ["lab"]


def test_course_id_is_checked_on_every_open(url):
    with batch():
        with Gradebook(url, course_id="course-a") as gb:
            assert gb.course_id == "course-a"
        with Gradebook(url, course_id="course-b") as gb:
            assert gb.course_id == "course-b"
    with Gradebook(url) as gb:
        assert {c.id for c in gb.db.query(Course).all()} >= {"course-a", "course-b"}


def test_nbgrader_is_put_back_after_nesting_and_errors(url):
    with batch():
        with batch():
            assert Gradebook.__init__ is not ORIGINAL_INIT
        assert grading_batch.active()  # the inner end leaves the outer batch running
        assert Gradebook.__init__ is not ORIGINAL_INIT
    assert Gradebook.__init__ is ORIGINAL_INIT and Gradebook.close is ORIGINAL_CLOSE
    with pytest.raises(RuntimeError, match="boom"), batch():
        with Gradebook(url):
            pass
        raise RuntimeError("boom")
    assert Gradebook.__init__ is ORIGINAL_INIT and Gradebook.close is ORIGINAL_CLOSE
    assert grading_batch.engines() == {}
    from nbgrader.nbgraderformat import common

    assert common.jsonschema.__name__ == "jsonschema"


def _cell(**nbgrader) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.metadata["nbgrader"] = {"schema_version": 3, "grade": True, "solution": False, "locked": True,
                                 "task": False, "grade_id": "t1", "points": 1.0, **nbgrader}
    return cell


BAD_METADATA = [
    {"points": "one"},  # a string for a number
    {"grade_id": 7},  # a number for a string
    {"locked": "yes"},
    {"grade": None},
    {"task": 1},
]


def _error(nb: nbformat.NotebookNode) -> str:
    with pytest.raises(ValidationError) as caught:
        MetadataValidator().validate_nb(copy.deepcopy(nb))
    return f"{caught.value.message} at {list(caught.value.absolute_path)}"


@pytest.mark.parametrize("bad", BAD_METADATA, ids=[next(iter(b)) for b in BAD_METADATA])
def test_the_same_metadata_errors_inside_a_batch(bad):
    nb = nbformat.v4.new_notebook(cells=[_cell(grade_id="ok"), _cell(**bad)])
    outside = _error(nb)
    with batch():
        from nbgrader.nbgraderformat import common

        assert common.jsonschema is not jsonschema  # the batch's validator answers here
        inside = _error(nb)
        inside_again = _error(nb)  # the kept validator gives the same answer twice
    assert inside == outside == inside_again


def test_good_metadata_passes_and_bad_fails_through_nbgraders_step():
    good = nbformat.v4.new_notebook(cells=[_cell(), _cell(grade_id="t2", points=2.5)])
    bad = nbformat.v4.new_notebook(cells=[_cell(points=[1])])
    with batch():
        CheckCellMetadata().preprocess(copy.deepcopy(good), {})
        with pytest.raises(ValidationError, match="nbgrader metadata may be corrupted"):
            CheckCellMetadata().preprocess(copy.deepcopy(bad), {})
