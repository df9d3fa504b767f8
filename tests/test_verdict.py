"""The verdict: the instructor's tests run in the grader's process, the student's code in another.

Three layers: the wire format (plain data only, exact types, views stay views), the connection
(what each side answers), and whole verdicts on real lab notebooks, honest and hostile.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.specs import MODELS
from tools import verdict, wire
from tools.samples import ROOT, fill, solution_code

# --------------------------------------------------------------------------------------------
# wire format
# --------------------------------------------------------------------------------------------


def _codecs() -> tuple[wire.Codec, wire.Codec]:
    return wire.Codec("grader", lambda *a: ("proxy", *a)), wire.Codec("child", lambda *a: ("proxy", *a))


def _cross(value: object, sender: wire.Codec, receiver: wire.Codec) -> object:
    import json

    return receiver.decode(json.loads(json.dumps(sender.encode(value))))


@pytest.mark.parametrize("value", [
    None, True, 0, -(2**80), 1.5, float("inf"), "naïve", b"\x00\xff", 2 + 3j, [1, (2, 3)], {"a": [1]},
    {1, 2}, frozenset({3}), slice(1, None, 2), range(0, 10, 3), Ellipsis,
    np.int32(-7), np.float16(0.5), np.arange(6, dtype=np.int64).reshape(2, 3), np.zeros((0, 4), np.float32),
    torch.float64, torch.device("cpu"), torch.Size([2, 3]),
])
def test_plain_values_cross_unchanged(value: object) -> None:
    grader, child = _codecs()
    back = _cross(value, grader, child)
    assert type(back) is type(value)
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and np.array_equal(back, value)
    else:
        assert back == value


def test_nan_tensors_frames_and_specs_cross() -> None:
    grader, child = _codecs()
    assert np.isnan(_cross(float("nan"), grader, child))
    t = torch.randn(3, 4, dtype=torch.float64)
    assert torch.equal(_cross(t, grader, child), t)
    b = torch.ones(2, dtype=torch.bfloat16)
    assert _cross(b, grader, child).dtype == torch.bfloat16
    frame = pd.DataFrame({"per_token": [1, 2], "S=4": [4, 8]}, index=["a", "b"])
    back = _cross(frame, child, grader)
    assert back.equals(frame) and back["per_token"].dtype == np.int64 and list(back.index) == ["a", "b"]
    spec = MODELS["Llama-3-8B"]
    assert _cross(spec, grader, child) == spec


def test_views_of_one_buffer_stay_views_of_one_buffer() -> None:
    grader, child = _codecs()
    buffer = torch.zeros(2, 8)
    first = _cross(buffer[:, :3], child, grader)
    buffer[:, 3:5] = 7.0
    second = _cross(buffer[:, :5], child, grader)
    assert first.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()
    assert first.untyped_storage().nbytes() == buffer.untyped_storage().nbytes()
    assert torch.equal(second, buffer[:, :5]) and not second.is_contiguous()


def test_a_freed_tensor_s_address_is_not_taken_for_a_view() -> None:
    import json

    grader, child = _codecs()
    received = []
    for step in range(8):  # each result freed on the sending side before the next is made
        result = torch.full((4096,), float(step))
        message = json.loads(json.dumps(child.encode(result)))
        del result
        received.append(grader.decode(message))
    assert [float(t[0]) for t in received] == [float(step) for step in range(8)]


def test_a_students_own_error_class_arrives_as_its_builtin_base() -> None:
    class NegativeSize(ValueError):
        pass

    error = wire.Codec.decode_error(wire.Codec.encode_error(NegativeSize("n_layers < 0")))
    assert type(error) is ValueError and "NegativeSize" in str(error) and "n_layers < 0" in str(error)
    other = wire.Codec.decode_error(wire.Codec.encode_error(type("Mine", (Exception,), {})("x")))
    assert type(other) is wire.RemoteError


def test_impostors_do_not_cross_as_numbers_or_tensors() -> None:
    class AlwaysEqual(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    class Liar(torch.Tensor):
        def __eq__(self, other: object) -> bool:  # type: ignore[override]
            return True

    grader, child = _codecs()
    sent = _cross(AlwaysEqual(3), child, grader)
    assert sent[0] == "proxy"  # by reference: never an int on the grader's side
    lie = _cross(torch.zeros(2).as_subclass(Liar), child, grader)
    assert type(lie) is torch.Tensor and torch.equal(lie, torch.zeros(2))


@pytest.mark.parametrize("message", [
    {"$": "global", "module": "os", "name": "system"},
    {"$": "global", "module": "builtins", "name": "__import__"},
    {"$": "ndarray", "dtype": "O", "shape": [1], "v": ""},
    {"$": "dataclass", "module": "subprocess", "name": "CompletedProcess", "fields": {}},
    {"$": "tensor", "dtype": "float32", "size": [100], "stride": [1], "offset": 0, "storage": 1, "nbytes": 4,
     "v": "AAAAAA=="},
    {"$": "pickle", "v": ""},
    ["untagged"],
])
def test_nothing_but_plain_data_is_built_from_a_message(message: object) -> None:
    grader, _ = _codecs()
    with pytest.raises(wire.WireError):
        grader.decode(message)


# --------------------------------------------------------------------------------------------
# connection
# --------------------------------------------------------------------------------------------


class _Cache:
    def __init__(self) -> None:
        self.items: list[int] = []

    def update(self, x: int) -> int:
        self.items.append(x)
        return len(self.items)


def _pair(names: dict[str, object]) -> tuple[wire.Connection, threading.Thread]:
    def lookup(name: str) -> object:  # as the student's process answers a name it lacks
        if name not in names:
            raise NameError(f"name {name!r} is not defined")
        return names[name]

    to_child_r, to_child_w = os.pipe()
    to_grader_r, to_grader_w = os.pipe()
    child = wire.Connection(to_child_r, to_grader_w, side="child", ops=wire.ALL_OPS, names=lookup)
    grader = wire.Connection(to_grader_r, to_child_w, side="grader", ops=wire.GRADER_OPS)
    thread = threading.Thread(target=child.serve_forever, daemon=True)
    thread.start()
    return grader, thread


def test_a_students_class_is_driven_through_its_proxy() -> None:
    def apply(f, x):  # noqa: ANN001, ANN202 - a student's function calling back the grader's
        return f(x) + 1

    grader, _ = _pair({"Cache": _Cache, "apply": apply, "secret": 42})
    Cache = grader.request("name", "Cache")
    cache = Cache()
    assert cache.update(5) == 1 and cache.update(6) == 2
    assert cache.items == [5, 6] and len(cache.items) == 2
    assert isinstance(cache, Cache) and not isinstance(3, Cache)
    assert grader.request("name", "apply")(lambda x: x * 10, 4) == 41
    with pytest.raises(NameError):
        grader.request("name", "missing")


def test_the_grader_answers_no_attribute_of_its_own_objects() -> None:
    grader, _ = _pair({"peek": lambda f: f.__globals__, "look": lambda f: f.keys, "call": lambda f: f()})
    with pytest.raises(AttributeError):  # a dunder of a proxy is never even asked for
        grader.request("name", "peek")(lambda: None)
    with pytest.raises(OSError, match="PermissionError"):  # a PermissionError arrives as its base
        grader.request("name", "look")({}.copy)
    assert grader.request("name", "call")(lambda: 7) == 7


def test_a_child_that_does_not_answer_is_lost_not_passed() -> None:
    r, w = os.pipe()
    r2, w2 = os.pipe()
    conn = wire.Connection(r, w2, side="grader", ops=wire.GRADER_OPS)
    conn.deadline = 0.0
    with pytest.raises(wire.PeerLost):
        conn.request("name", "anything")
    assert not issubclass(wire.PeerLost, Exception)  # `except Exception` in a test cannot swallow it
    for fd in (r, w, r2, w2):
        os.close(fd)


# --------------------------------------------------------------------------------------------
# whole verdicts on the labs
# --------------------------------------------------------------------------------------------

LAB00 = "lab00_cache_sizing"
LAB01 = "lab01_kv_cache"


def _source(lab: str) -> Path:
    return ROOT / "source" / lab / f"{lab}.ipynb"


def _submission(tmp_path: Path, lab: str, cells: dict[str, str] | None, name: str = "s") -> Path:
    release = nbformat.read(ROOT / "release" / lab / f"{lab}.ipynb", as_version=4)
    nb = release if cells is None else fill(release, {**solution_code(ROOT, lab), **cells})
    path = tmp_path / name / f"{lab}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    return path


def _verdict(tmp_path: Path, lab: str, cells: dict[str, str] | None, **kw: object) -> verdict.Verdict:
    return verdict.run_in_subprocess(_submission(tmp_path, lab, cells), _source(lab), **kw)


def _failed(v: verdict.Verdict) -> set[str]:
    return {name for name, ok in v.passed().items() if not ok}


@pytest.mark.slow
def test_the_solution_passes_and_the_untouched_release_fails(tmp_path: Path) -> None:
    solved = _verdict(tmp_path / "a", LAB00, {})
    assert solved.tests and not _failed(solved), solved
    untouched = _verdict(tmp_path / "b", LAB00, None)
    assert _failed(untouched) == set(untouched.tests)


_WRONG_FORMULA_THAT_PATCHES = '''
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    import gc, sys
    import course_lib.grading as g
    def ok(*args, **kwargs):
        return None
    g.check_int = g.check_real = g.expect_error = ok     # the module ...
    frame = sys._getframe(1)
    while frame is not None:                              # ... every caller's globals ...
        for name in ("check_int", "check_real", "expect_error"):
            if name in frame.f_globals:
                frame.f_globals[name] = ok
        frame = frame.f_back
    for obj in gc.get_objects():                          # ... and any namespace that holds it
        if type(obj) is dict and obj.get("check_int") is not None:
            obj["check_int"] = ok
    return 3 * n_layers * n_kv_heads * head_dim * bytes_per_elem   # wrong: 3, not 2
'''


@pytest.mark.slow
def test_code_that_patches_the_checks_at_call_time_changes_nothing(tmp_path: Path) -> None:
    v = _verdict(tmp_path, LAB00, {"kv_bytes_per_token": _WRONG_FORMULA_THAT_PATCHES})
    assert "test_kv_bytes_per_token" in _failed(v)
    assert "1.5x too large" in v.tests["test_kv_bytes_per_token"].message


_KILLS_ITSELF_OUTSIDE_A_KERNEL = '''
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    import os
    if getattr(get_ipython(), "kernel", None) is None:   # not the notebook's kernel: end this process
        os._exit(0)
    return 2 * n_layers * n_kv_heads * head_dim * int(bytes_per_elem)
'''


@pytest.mark.slow
def test_a_process_that_dies_fails_its_tests_and_the_others_go_on(tmp_path: Path) -> None:
    v = _verdict(tmp_path, LAB00, {"kv_bytes_per_token": _KILLS_ITSELF_OUTSIDE_A_KERNEL})
    assert "test_kv_bytes_per_token" in _failed(v)
    assert "stopped answering" in v.tests["test_kv_bytes_per_token"].message
    assert v.passed().get("test_preallocation_waste") is True  # a fresh process for later tests


_HANGS = '''
def preallocation_waste(max_seq_len, actual_lens):
    while True:
        pass
'''


@pytest.mark.slow
def test_a_function_that_hangs_fails_within_the_cell_timeout(tmp_path: Path) -> None:
    v = _verdict(tmp_path, LAB00, {"preallocation_waste": _HANGS}, cell_timeout=5)
    assert "test_preallocation_waste" in _failed(v)
    assert v.passed().get("test_kv_bytes_per_token") is True
    assert v.seconds < 60


_LOUD_AND_RIGHT = '''
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    import inspect, sys
    for frame in inspect.stack():          # whatever it finds, it can only print it
        print(frame.filename, frame.code_context)
    print("x" * 10_000_000)
    for name, value in list(globals().items()):
        if "HIDDEN" in repr(value):
            raise RuntimeError(repr(value)[:100])
    for bad in (n_layers, n_kv_heads, head_dim, bytes_per_elem):
        if bad < 0:
            raise ValueError("negative")
    return int(2 * int(n_layers) * int(n_kv_heads) * int(head_dim) * bytes_per_elem)
'''


@pytest.mark.slow
def test_the_students_process_never_sees_a_test(tmp_path: Path) -> None:
    submission = _submission(tmp_path, LAB00, {"kv_bytes_per_token": _LOUD_AND_RIGHT})
    code = "\n".join(verdict.student_code(nbformat.read(submission, as_version=4),
                                          nbformat.read(_source(LAB00), as_version=4)))
    assert "BEGIN HIDDEN TESTS" not in code and "check_int(" not in code
    v = verdict.run_in_subprocess(submission, _source(LAB00))
    assert v.passed()["test_kv_bytes_per_token"] is True  # printing is not wrong; right is right


_EQUALS_EVERYTHING = '''
class Bytes(int):
    def __eq__(self, other):
        return True
    __ne__ = lambda self, other: False
    __hash__ = int.__hash__

def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    return Bytes(1)
'''


@pytest.mark.slow
def test_an_answer_that_claims_to_equal_everything_fails(tmp_path: Path) -> None:
    v = _verdict(tmp_path, LAB00, {"kv_bytes_per_token": _EQUALS_EVERYTHING})
    assert "test_kv_bytes_per_token" in _failed(v)


_READS_THE_REFERENCES = '''
def forward(model, idx, cache=None):
    import glob, numpy as np, torch
    places = ["ref/*.npz", "../**/*.npz", "/tmp/**/*.npz", "/home/**/*.npz", "COURSE/source/**/*.npz"]
    for pattern in places:
        for path in glob.glob(pattern, recursive=True):
            refs = np.load(path)
            return torch.from_numpy(refs["fwd/logits"][:, :idx.shape[1]])
    return torch.zeros(idx.shape[0], idx.shape[1], model.vocab_size)
'''.replace("COURSE", str(ROOT))


@pytest.mark.slow
@pytest.mark.system
def test_the_reference_outputs_are_out_of_the_students_reach(tmp_path: Path) -> None:
    from tools import sandbox

    if not sandbox.enabled():
        pytest.skip("the grading sandbox (bwrap) is not available here")
    v = _verdict(tmp_path, LAB01, {"forward": _READS_THE_REFERENCES})
    assert "test_forward" in _failed(v)
    # Had it found the file, its uncached logits would be right and only the cached run would fail.
    assert "without a cache" in v.tests["test_forward"].message, v.tests["test_forward"].message
    assert v.passed().get("test_attention") is True


# --------------------------------------------------------------------------------------------
# every honest answer keeps its marks
# --------------------------------------------------------------------------------------------

def _honest() -> list[tuple[str, str]]:
    from tools.samples import available_labs, load_variants

    return [(lab, variant) for lab in available_labs()
            for variant in ["solution", *(f"correct:{n}" for n in getattr(load_variants(lab), "CORRECT", {}))]]


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every lab's release generated now from source/ (the committed release/ may lag behind)."""
    import shutil

    from tools import pipeline

    course = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "source", course / "source")
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    pipeline.release(course)
    return course / "release"


@pytest.mark.slow
@pytest.mark.parametrize("lab,variant", _honest())
def test_every_correct_variant_passes_the_verdict(lab: str, variant: str, fresh_release: Path,
                                                  tmp_path: Path) -> None:
    from tools.samples import submission_cells

    release = nbformat.read(fresh_release / lab / f"{lab}.ipynb", as_version=4)
    path = tmp_path / f"{lab}.ipynb"
    nbformat.write(fill(release, submission_cells(ROOT, lab, variant)), path)
    # through the warm forking server, as autograde runs it (each verdict still a fresh process;
    # the cold path is what the tests above use)
    v = verdict.run_in_subprocess(path, _source(lab), warm=True)
    assert v.tests and not _failed(v), {t: r.message[:300] for t, r in v.tests.items() if not r.passed}


def test_the_verdict_started_before_the_kernel_is_the_one_recorded(tmp_path, monkeypatch):
    """StartVerdict (before the kernel's step) starts the verdict; CourseVerdict (after it) waits
    for that one instead of computing another, unless the submission changed in between."""
    import time

    from tools import verdict_step

    seen: list[str] = []

    def compute(self, submitted: Path, source: Path) -> verdict.Verdict:
        seen.append(submitted.read_text())
        time.sleep(0.3)  # still running when the kernel's step would be
        return verdict.Verdict(tests={"t1": verdict.TestResult(submitted.read_text() == "v1", "changed")})

    monkeypatch.setattr(verdict_step.CourseVerdict, "compute", compute)
    submitted = tmp_path / "submitted" / "s1" / "lab" / "lab.ipynb"
    submitted.parent.mkdir(parents=True)
    submitted.write_text("v1")
    resources = {"metadata": {"path": str(tmp_path / "autograded" / "s1" / "lab")},
                 "nbgrader": {"assignment": "lab", "student": "s1", "notebook": "lab"}}

    def notebook() -> nbformat.NotebookNode:
        cell = nbformat.v4.new_code_cell("pass")
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "t1", "points": 1}
        return nbformat.v4.new_notebook(cells=[cell])

    nb = notebook()
    verdict_step.StartVerdict().preprocess(nb, resources)
    nb, _ = verdict_step.CourseVerdict().preprocess(nb, resources)
    record = verdict_step.stored_verdict(nb)
    assert seen == ["v1"] and record["tests"]["t1"]["passed"]
    assert record["wall_seconds"] >= 0.3 and record["waited_seconds"] <= record["wall_seconds"]

    nb = notebook()
    verdict_step.StartVerdict().preprocess(nb, resources)
    submitted.write_text("v2")  # changed after the start: that verdict is not the one recorded
    nb, _ = verdict_step.CourseVerdict().preprocess(nb, resources)
    assert len(seen) == 3 and seen[-1] == "v2" and not verdict_step.stored_verdict(nb)["tests"]["t1"]["passed"]
    assert nb.cells[0].outputs[0]["ename"] == verdict_step.ENAME
