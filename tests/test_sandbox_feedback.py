"""Hidden tests do not leave through the feedback (tools/feedback.py: StripHiddenTestOutput).

A graded function finds the source of the test cell calling it (frames, linecache) and prints
it encoded (base64, rot13, hex, reversed), keeps it for a later answer cell to print, and puts it
into exception messages and a made-up exception class name. Graded with the real nbgrader;
nothing of it may reach the feedback page, while the course's own failure messages do.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from tools import feedback, pipeline
from tools.samples import ROOT, fill, solution_code

LAB = "lab00_cache_sizing"

SPY = '''
import base64 as _b64, codecs as _codecs, linecache as _lc, sys as _sys
_stash = []
_honest = kv_bytes_per_token
_SPY_MARK = "EX" + "FIL"  # the marker never appears in the source, only in what the spy prints


def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    _caller = getattr(_sys, "_get" + "frame")(1)
    _src = "".join(_lc.getlines(_caller.f_code.co_filename))
    _stash.append(_src)
    print(_SPY_MARK + "-B64", _b64.b64encode(_src.encode()).decode())
    print(_SPY_MARK + "-ROT13", _codecs.encode(_src, "rot13"))
    print(_SPY_MARK + "-HEX", _src.encode().hex())
    print(_SPY_MARK + "-REV", _src[::-1])
    for _i in range(0, len(_src), 40):
        print(_SPY_MARK + "-PIECE", _src[_i:_i + 40])
    return _honest(n_layers, n_kv_heads, head_dim, bytes_per_elem)
'''
RAISER = '''

def max_context_len(*args, **kwargs):
    import base64 as _b64, linecache as _lc, sys as _sys
    _caller = getattr(_sys, "_get" + "frame")(1)
    _src = "".join(_lc.getlines(_caller.f_code.co_filename))
    _name = "EX" + "FILCLS" + _src.encode().hex()[:200]
    raise type(_name, (RuntimeError,), {})("EX" + "FIL-EXC " + _b64.b64encode(_src.encode()).decode())
'''
LATER = '''

print("EX" + "FIL-LATER", _b64.b64encode("".join(_stash).encode()).decode())
'''


@pytest.fixture(scope="module")
def leaky_course(tmp_path_factory):
    root = tmp_path_factory.mktemp("leaky")
    shutil.copytree(ROOT / "source" / LAB, root / "source" / LAB)
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    pipeline.release(root)
    cells = solution_code(root, LAB)
    cells["kv_bytes_per_token"] += "\n" + SPY
    cells["max_context_len"] += RAISER
    cells["preallocation_waste"] += LATER  # the last answer cell with code
    release_nb = nbformat.read(root / "release" / LAB / f"{LAB}.ipynb", as_version=4)
    target = root / "submitted" / "spy" / LAB / f"{LAB}.ipynb"
    target.parent.mkdir(parents=True)
    nbformat.write(fill(release_nb, cells), target)
    runs = pipeline.autograde(root, [("spy", LAB)], verbose=False, timeout=30)
    assert runs[0].success, runs[0].error
    pipeline.feedback(root, [LAB])
    return root


def _hidden_lines(root: Path) -> list[str]:
    """Lines (12+ characters) only the hidden tests have (not also in the student's release)."""
    nb = nbformat.read(root / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    release = (root / "release" / LAB / f"{LAB}.ipynb").read_text()
    released = {x.strip() for c in nbformat.reads(release, as_version=4).cells for x in c.source.splitlines()}
    lines = []
    for cell in nb.cells:
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell.source, re.S):
            lines += [x.strip() for x in block.splitlines() if len(x.strip()) >= 12 and x.strip() not in released]
    assert len(lines) > 20
    return lines


@pytest.mark.slow
def test_the_spy_did_run(leaky_course):
    """Not vacuous: the graded notebook holds the encoded hidden tests the spy printed."""
    nb = nbformat.read(leaky_course / "autograded" / "spy" / LAB / f"{LAB}.ipynb", as_version=4)
    text = str([c.get("outputs") for c in nb.cells])
    for marker in ("EXFIL-B64", "EXFIL-ROT13", "EXFIL-HEX", "EXFIL-REV", "EXFIL-PIECE", "EXFIL-LATER",
                   "EXFIL-EXC", "EXFILCLS"):
        assert marker in text, marker


@pytest.mark.slow
def test_the_students_kernel_never_saw_a_hidden_test(leaky_course):
    """The kernel runs the visible part of each test cell only: what the spy found in the frames
    calling it (decoded from every copy it printed into the graded notebook, which keeps all the
    kernel's output) holds no line of a hidden test."""
    import base64

    nb = nbformat.read(leaky_course / "autograded" / "spy" / LAB / f"{LAB}.ipynb", as_version=4)
    text = "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    found = [base64.b64decode(m).decode() for m in re.findall(r"EXFIL-(?:B64|LATER) ([A-Za-z0-9+/=]+)", text)]
    assert found and any("check_int(kv_bytes_per_token(" in f for f in found)  # it did see the visible tests
    seen = "\n".join(found)
    assert "BEGIN HIDDEN TESTS" not in seen
    # lines it may have seen elsewhere: its own cells, the course library's source
    known = (leaky_course / "submitted" / "spy" / LAB / f"{LAB}.ipynb").read_text() + \
        "".join(p.read_text() for p in (ROOT / "course_lib").glob("*.py"))
    assert not [line for line in _hidden_lines(leaky_course) if line in seen and line not in known]


@pytest.mark.slow
def test_nothing_the_spy_printed_reaches_the_feedback(leaky_course):
    page = (leaky_course / "feedback" / "spy" / LAB / f"{LAB}.html").read_text()
    plain = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "EXFIL" not in plain
    assert "BEGIN HIDDEN TESTS" not in plain
    assert not [line for line in _hidden_lines(leaky_course) if line in plain]
    # the later answer cell's output is replaced, the failing test shows only type and line
    assert feedback.AFTER_HIDDEN.split(":")[0] in plain
    assert "RuntimeError" not in plain or "EXFIL" not in plain
    assert "Exception" in plain  # the made-up class name is shown as plain "Exception"


@pytest.mark.slow
def test_a_failing_test_shows_its_type_and_visible_line(leaky_course):
    """The spy's max_context_len raises a made-up exception class: the feedback names it
    "Exception" and shows the visible test line that failed, nothing of its message."""
    page = html.unescape(re.sub(r"<[^>]+>", "", (leaky_course / "feedback" / "spy" / LAB / f"{LAB}.html").read_text()))
    assert re.search(r"Exception at line \d+ of the test: check_int\(max_context_len\(", page)


def _error_cell(count: int, source: str, ename: str, evalue: str, frames: list[str]):
    cell = nbformat.v4.new_code_cell(source)
    cell.execution_count = count
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "locked": True, "points": 1, "solution": False}
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="printed by graded code\n"),
                    nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                           traceback=[f"\x1b[0;31m{ename}\x1b[0m Traceback", *frames,
                                                      f"{ename}: {evalue}"])]
    return cell


def test_failure_only_keeps_course_messages_from_the_test_cell():
    src = "check_int(f(1), 2, call='f(1)')\n### BEGIN HIDDEN TESTS\ncheck_int(f(7), 14, call='f(7)')\n" \
          "### END HIDDEN TESTS\n"
    genuine = _error_cell(5, src, "AnswerError", "f(7) returned 1, expected 14 (14x too small).",
                          ["Cell \x1b[0;32mIn[5], line 3\x1b[0m"])
    out = feedback._failure_only(genuine)
    assert [o.evalue for o in out] == ["f(7) returned 1, expected 14 (14x too small)."]
    # raised by the student's own code (a frame of another cell on the way): not the course's
    forged = _error_cell(5, src, "AnswerError", "aGlkZGVu", ["Cell In[5], line 3", "Cell In[2], line 4, in f"])
    out = feedback._failure_only(forged)
    assert "aGlkZGVu" not in str(out) and "hidden tests" in out[0].evalue
    # any other exception: its type and the visible line, never its message
    other = _error_cell(5, src, "ValueError", "secret", ["Cell In[5], line 1", "Cell In[2], line 4, in f"])
    out = feedback._failure_only(other)
    assert "secret" not in str(out) and "check_int(f(1), 2, call='f(1)')" in out[0].evalue
    made_up = _error_cell(5, src, "ZXhmaWw", "x", ["Cell In[5], line 3"])
    assert feedback._failure_only(made_up)[0].ename == "Exception"


def test_course_message_is_scrubbed_of_what_the_answer_controls():
    text = ("g(1) raised KeyError: 'c2VjcmV0'; expected ValueError (negative sizes)\n"
            "g(2) returned 'c2VjcmV0'; expected it to raise ValueError (x)\n"
            "g(3) returned a __main__.c2VjcmV0; an int was expected\n"
            "g(4) returned 1" + "2" * 60 + ", expected 3")
    out = feedback._scrub_course_message(text)
    assert "c2VjcmV0" not in out and "2" * 30 not in out
    assert "raised KeyError; expected ValueError" in out
    assert "returned a value; expected it to raise" in out
    assert "returned an object of a class defined in the answer" in out
    kept = "kv_bytes_per_token(32, 8, 128, 2) returned 262,144, expected 131,072 (2x too large).\n" \
           "  Likely mistake: forgot the factor 2"
    assert feedback._scrub_course_message(kept) == kept


def test_clean_feedback_folder_keeps_only_pages(tmp_path):
    graded = tmp_path / "autograded" / "ann" / LAB
    graded.mkdir(parents=True)
    (graded / f"{LAB}.ipynb").write_text("{}")
    folder = tmp_path / "feedback" / "ann" / LAB
    (folder / "ref").mkdir(parents=True)
    (folder / "ref" / "refs.npz").write_text("expected outputs")
    for name in (f"{LAB}.html", "timestamp.txt", "submission_secret.txt", "written_by_code.txt"):
        (folder / name).write_text("x")
    feedback.clean_feedback_folder(LAB, "ann", [str(graded / f"{LAB}.ipynb")])
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{LAB}.html", "timestamp.txt",
                                                                "submission_secret.txt"])
