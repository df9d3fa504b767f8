"""Lab 01's reference outputs: where they were made, that they are current, that they reproduce,
that the tolerance is calibrated, and that the benchmark script runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from course_lib import lab01_refs as K
from course_lib.grading import TENSOR_RTOL, AnswerError
from course_lib.minigpt import load_minigpt, weights_fingerprint
from tools import references as R
from tools.nbbuild import render

REF = R.REF_DIR / R.REF_FILE

# Floats are never compared bit for bit across machines: another CPU (or a GPU) sums in another
# order. Chosen tolerances, with the reason:
#: Reference arrays regenerated on this machine vs the stored ones (relative error norm). 10x
#: below the grading tolerance (1e-4), so a drifted reference cannot eat the margin of a correct
#: answer; an AMD EPYC vs an Intel Xeon differed by at most 1.7e-6 on these arrays.
REPRODUCE_RTOL = 1e-5
#: Greedy margins (top-1 minus top-2 logit, in logit units) regenerated vs stored. The two CPUs
#: above differed by 4.8e-6; 1e-4 is 20x that and 100x below MIN_MARGIN (1e-2), the margin a
#: prompt must have, so a margin that moved this little cannot hide a token that could flip.
MARGIN_ATOL = 1e-4
REQUIRED_META = ["device", "device_name", "torch_version", "numpy_version", "dtype", "allow_tf32_matmul",
                 "allow_tf32_cudnn", "float32_matmul_precision", "created_utc", "weights_fingerprint",
                 "solution_sha256"]


@pytest.fixture(scope="module")
def refs():
    with np.load(REF, allow_pickle=False) as data:
        yield {k: data[k] for k in data.files}


def test_references_load_without_pickle_and_record_their_device(refs):
    meta = json.loads(str(refs["meta"]))
    for key in REQUIRED_META:
        assert key in meta, key
    assert meta["device"] in ("cpu", "cuda")
    assert meta["dtype"] == "float32"
    assert meta["allow_tf32_matmul"] is False and meta["allow_tf32_cudnn"] is False
    assert meta["float32_matmul_precision"] == "highest"
    assert json.loads((R.REF_DIR / R.META_FILE).read_text()) == meta
    for key, arr in refs.items():
        assert arr.dtype != object, key


def test_report_references_not_run_on_cuda(refs):
    """Prints (and warns about) every reference file that was not computed on a CUDA GPU."""
    not_cuda = []
    for path in sorted(R.REF_DIR.glob("*.npz")):
        meta = R.read_meta(path)
        if meta["device"] != "cuda":
            not_cuda.append(f"{path.relative_to(R.ROOT)} (device {meta['device']}: {meta['device_name']}, "
                            f"torch {meta['torch_version']})")
    if not_cuda:
        text = ("references NOT computed on CUDA; regenerate on a GPU with "
                "`python -m tools.references --device cuda`: " + "; ".join(not_cuda))
        print(text)
        warnings.warn(text, UserWarning, stacklevel=1)
    else:
        print("all Lab 01 references were computed on CUDA")
    assert not_cuda or all(R.read_meta(p)["device"] == "cuda" for p in R.REF_DIR.glob("*.npz"))


def test_references_match_current_weights_and_solution(refs):
    meta = json.loads(str(refs["meta"]))
    assert meta["weights_fingerprint"] == weights_fingerprint(load_minigpt()), \
        "MiniGPT's weights changed: regenerate with `python -m tools.references`"
    _, solutions = R.notebook_code()
    text = "\n".join(solutions[k] for k in sorted(solutions))
    import hashlib

    assert meta["solution_sha256"] == hashlib.sha256(text.encode()).hexdigest()[:16], \
        "the notebook's solution changed: regenerate with `python -m tools.references`"


def test_source_notebook_is_built_from_labs():
    lab = R.ROOT / "labs" / f"{R.LAB}.py"
    assert render(lab) == R.SOURCE_NOTEBOOK.read_text(), "run `python -m tools.nbbuild`"


def _compare_regenerated(new: dict, stored: dict) -> list[str]:
    """Keys whose regenerated value differs from the stored one beyond the chosen tolerances.

    Integers, booleans and token ids must be equal; float arrays within REPRODUCE_RTOL
    (relative error norm); the float scalars (greedy margins) within MARGIN_ATOL.
    """
    bad = []
    if set(new) != set(stored):
        return sorted(set(new) ^ set(stored))
    for key in new:
        if key == "meta":
            continue
        a, b = np.asarray(new[key]), np.asarray(stored[key])
        if a.shape != b.shape or a.dtype != b.dtype:
            bad.append(f"{key}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}")
        elif a.dtype.kind == "f" and a.ndim:
            if not np.linalg.norm(a.astype(np.float64) - b) <= REPRODUCE_RTOL * np.linalg.norm(b) + 1e-12:
                bad.append(key)
        elif a.dtype.kind == "f":  # a greedy margin: inf when nothing is generated
            if not (float(a) == float(b) or abs(float(a) - float(b)) <= MARGIN_ATOL):
                bad.append(f"{key}: {float(a)!r} vs {float(b)!r}")
        elif not np.array_equal(a, b):
            bad.append(key)
    return bad


def test_comparison_of_regenerated_arrays_uses_tolerances_not_bits(refs):
    """Rounding a float a little (as another CPU does) passes; a changed token or a large drift fails."""
    stored = dict(refs)
    nudged = dict(refs)
    nudged["gen/0/min_margin"] = np.array(float(refs["gen/0/min_margin"]) + 4.8e-6)  # as seen across CPUs
    out = refs["attn/0/out"]
    nudged["attn/0/out"] = (out * (1 + 1e-7)).astype(out.dtype)
    assert _compare_regenerated(nudged, stored) == []
    tokens = refs["gen/0/tokens"].copy()
    tokens[0, -1] = (tokens[0, -1] + 1) % 256
    assert _compare_regenerated({**stored, "gen/0/tokens": tokens}, stored) == ["gen/0/tokens"]
    drifted = (out * (1 + 1e-3)).astype(out.dtype)
    assert _compare_regenerated({**stored, "attn/0/out": drifted}, stored) == ["attn/0/out"]
    moved = np.array(float(refs["gen/0/min_margin"]) + 1e-3)
    assert len(_compare_regenerated({**stored, "gen/0/min_margin": moved}, stored)) == 1


@pytest.mark.slow
def test_regenerating_on_cpu_reproduces_the_stored_arrays(refs, tmp_path):
    arrays, meta = R.make_references("cpu", log=lambda _m: None)
    R.write_references(tmp_path, arrays, meta)
    with np.load(tmp_path / R.REF_FILE, allow_pickle=False) as new:
        assert _compare_regenerated({k: new[k] for k in new.files}, refs) == []


def test_stored_references_cover_the_issue_cases(refs):
    shapes = [(refs[f"attn/{i}/q"].shape, refs[f"attn/{i}/k"].shape) for i in range(int(refs["attn/n_cases"]))]
    assert any(q[1] == k[1] for q, k in shapes), "MHA"
    assert any(q[1] > k[1] > 1 for q, k in shapes), "GQA"
    assert any(q[2] == 1 for q, _ in shapes), "decode T_q = 1"
    assert any(1 < q[2] < k[2] for q, k in shapes), "chunked prefill"
    assert any(q[0] > 1 for q, _ in shapes), "batch > 1"
    # the first failing case of an unshifted mask must be a decode step (clearest message)
    first_shifted = next(i for i, (q, k) in enumerate(shapes) if q[2] < k[2])
    assert shapes[first_shifted][0][2] == 1
    for name in K.FORWARD_MISTAKES:
        assert K.forward_mistake_key(name) in refs, name
    for i in range(int(refs[K.ATTENTION_COUNT])):
        assert {K.attention_mistake_key(i, name) for name in K.ATTENTION_MISTAKES} <= set(refs), i
    for i in range(int(refs["gen/n_cases"])):
        assert float(refs[f"gen/{i}/min_margin"]) >= R.MIN_MARGIN


def test_solution_reproduces_references_and_bugs_differ(refs):
    ns = R.load_solution()
    for i in range(int(refs["attn/n_cases"])):
        q, k, v = (torch.from_numpy(refs[f"attn/{i}/{n}"]) for n in "qkv")
        out = ns["attention"](q, k, v, causal=bool(refs[f"attn/{i}/causal"])).numpy()
        ref = refs[f"attn/{i}/out"]
        assert np.linalg.norm(out - ref) <= REPRODUCE_RTOL * np.linalg.norm(ref)
    idx = torch.from_numpy(refs["fwd/idx"])
    for name in K.FORWARD_MISTAKES:
        bug = refs[K.forward_mistake_key(name)]
        assert np.linalg.norm(bug - refs["fwd/logits"]) > 1e-2 * np.linalg.norm(refs["fwd/logits"]), name
    cached = R.run_forward_schedule(ns, idx, [int(s) for s in refs["fwd/schedule"]],
                                    capacity=int(refs["fwd/capacity"]))
    assert np.linalg.norm(cached - refs["fwd/logits"]) <= REPRODUCE_RTOL * np.linalg.norm(refs["fwd/logits"])


@pytest.mark.slow
def test_tolerance_is_calibrated_with_10x_margins():
    from tools import calibrate_lab01 as C

    rows, _meta = C.calibrate()
    summary = C.summarise(rows)
    for s in summary:
        assert s["margin_correct"] >= C.MARGIN, s
        assert s["margin_bug"] >= C.MARGIN, s
    assert C.TOLERANCE == TENSOR_RTOL  # what the lab's hidden tests grade with: see the test below
    assert (R.ROOT / "docs" / "calibration_lab01.md").exists()


def _hidden_part(grade_id: str) -> str:
    """The hidden tests of a test cell of the source notebook."""
    cell = next(c for c in json.loads(R.SOURCE_NOTEBOOK.read_text())["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)
    return cell["source"].split("### BEGIN HIDDEN TESTS", 1)[1].split("### END HIDDEN TESTS", 1)[0]


def _run_hidden(grade_id: str, **answers) -> None:
    """Run a test cell's hidden tests, from the notebook's folder, on the solution with ``answers`` replaced."""
    ns = R.load_solution()
    ns.update(answers)
    cwd = os.getcwd()
    os.chdir(R.SOURCE_NOTEBOOK.parent)
    try:
        exec(compile(_hidden_part(grade_id), grade_id, "exec"), ns)  # noqa: S102 - the course's own tests
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("factor, passes", [(0.5, True), (2.0, False)])
def test_hidden_tests_grade_with_the_calibrated_tolerance(factor, passes):
    """An answer off by half the calibrated tolerance passes the hidden attention and forward tests, one
    off by twice that fails them: the lab grades its tensors with TENSOR_RTOL, the calibration's."""
    ns = R.load_solution()
    scale = 1 + factor * TENSOR_RTOL  # relative error norm of x * scale against x: factor * TENSOR_RTOL

    def attention(*args, **kwargs):
        return ns["attention"](*args, **kwargs) * scale

    def forward(model, idx, cache=None):
        return ns["forward"](model, idx, cache) * scale

    for grade_id, answers in [("test_attention", {"attention": attention}), ("test_forward", {"forward": forward})]:
        if passes:
            _run_hidden(grade_id, **answers)
        else:
            with pytest.raises(AnswerError, match="relative error"):
                _run_hidden(grade_id, **answers)


def test_every_stored_mistake_is_a_mutant_of_the_lab():
    """The reference file stores the outputs of mistakes that the lab's variants make (and can remake)."""
    mutants = {m["name"] for m in R.load_variants().MUTANTS}
    assert set(R.stored_mistakes()) == set(K.ATTENTION_MISTAKES) | set(K.FORWARD_MISTAKES)
    assert set(R.stored_mistakes()) <= mutants


@pytest.mark.slow
def test_benchmark_script_prints_its_tables():
    out = subprocess.run([sys.executable, str(R.ROOT / "bench" / "bench_lab01.py"), "--lengths", "16", "32", "64",
                          "--repeats", "1", "--new-tokens", "2", "--gqa-length", "256",
                          "--e2e-lengths", "8", "24", "--e2e-new-tokens", "3"],
                         capture_output=True, text=True, timeout=300, cwd=R.ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    decode, gqa, e2e = (block.splitlines() for block in out.stdout.strip().split("\n\n"))
    assert decode[0].split("|")[0].strip() == "S" and "HF cached/token" in decode[0]
    assert [ln.split("|")[0].strip() for ln in decode[2:]] == ["16", "32", "64"]
    assert "n/a" not in out.stdout  # transformers is installed: the peer column is measured
    assert "256 cached tokens" in gqa[0] and "grouped rows" in gqa[1]
    assert [ln.split("(")[0].strip() for ln in gqa[3:]] == ["MiniGPT", "Llama-3-8B layer"]
    assert "cost model fitted" in e2e[0] and "TTFT" in e2e[1]
    assert [ln.split("|")[0].strip() for ln in e2e[3:]] == ["8", "24"]
