"""The course's GPU measurements: CUDA-made references, stored GPU data, the scripts that make them.

The data come from one run of ``bench/gpu_measure.sh`` on a GPU machine; these tests check
what was stored (each file says it ran on CUDA, with its versions) and keep the scripts
working on a CPU, where they run on tiny sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from course_lib import measured
from tools import calibrate_lab01 as C
from tools import references as R

ROOT = Path(__file__).resolve().parent.parent


def test_every_reference_file_was_made_on_cuda_with_tf32_off():
    files = sorted(R.REF_DIR.glob("*.npz"))
    assert files
    for path in files:
        meta = R.read_meta(path)
        assert meta["device"] == "cuda", f"{path.name}: made on {meta['device']}"
        for key in ("device_name", "cuda_version", "cuda_driver", "torch_version"):
            assert meta.get(key), f"{path.name}: {key} not recorded"
        assert "+cpu" not in meta["torch_version"]
        assert meta["allow_tf32_matmul"] is False and meta["allow_tf32_cudnn"] is False


def test_stored_gpu_data_record_their_device():
    for name in measured.FILES:
        data = measured.load(name)
        meta = data["meta"]
        assert meta["device"] == "cuda" and meta["device_name"] and meta["cuda_version"]
        label = measured.device_label(meta)
        assert meta["device_name"] in label and meta["torch_version"] in label


def test_stored_roofline_has_what_lab02_plots():
    data = measured.gpu_roofline()
    for dtype in ("float16", "bfloat16", "float32"):
        label, peak, bandwidth = measured.roof(data, dtype)
        assert peak > 1e12 and bandwidth > 1e11 and dtype in label
    assert {s["dtype"] for s in data["settings"]} == {"float32", "float16"}  # the notebook indexes these
    for setting in data["settings"]:
        phases = {p["phase"] for p in setting["points"]}
        assert phases == {"prefill", "decode"}
        for p in setting["points"]:
            assert p["median_s"] > 0 and p["T_k"] == p["N"]
            assert p["T_q"] == (p["N"] if p["phase"] == "prefill" else 1)
            assert not {"flops", "FLOPs", "bytes"} & set(p), "counts are the student's to compute"


def test_stored_lab01_bench_has_every_table():
    data = measured.gpu_lab01_bench()
    assert data["decode"] and data["gqa"] and data["e2e"]
    for row in data["decode"]:
        assert 0 < row["cached_s"] and 0 < row["uncached_s"]
    assert data["meta"]["allow_tf32_matmul"] is False


def test_measurement_loader_rejects_unknown_and_cpu_data():
    with pytest.raises(ValueError, match="no stored measurement"):
        measured.load("nope")
    with pytest.raises(ValueError, match="does not record a CUDA device"):
        measured.require_cuda({"meta": {"device": "cpu", "device_name": "x"}}, "file.json")
    with pytest.raises(KeyError, match="no matmul probe in float64"):
        measured.probe(measured.gpu_roofline(), "matmul", "float64")


def test_calibration_uses_only_a_real_tf32_run_of_the_same_references():
    refs = np.load(R.REF_DIR / R.REF_FILE, allow_pickle=False)
    meta = R.read_meta()
    # the references themselves (TF32 off) are not a TF32 measurement
    assert C._load_tf32(R.REF_DIR / R.REF_FILE, refs, meta) == (None, None)
    assert C._load_tf32(ROOT / "missing.npz", refs, meta) == (None, None)
    tf32, tf32_meta = C._load_tf32(C.TF32_REFS, refs, meta)
    assert tf32 is not None and tf32_meta["allow_tf32_matmul"] is True
    errors = [C._rel(tf32[k], refs[k]) for k in tf32 if k.endswith(("/out", "/logits"))]
    assert max(errors) > C.TOLERANCE, "TF32 on the GPU broke the tolerance when measured; the lab says so"


@pytest.mark.slow
def test_tf32_reference_run_really_has_tf32_on(tmp_path):
    """The notebook's setup cell switches TF32 off; a --tf32 run must switch it on after it."""
    _, meta = R.make_references("cpu", with_bugs=False, log=lambda _m: None, tf32=True)
    assert meta["allow_tf32_matmul"] is True and meta["float32_matmul_precision"] == "high"
    _, meta = R.make_references("cpu", with_bugs=False, log=lambda _m: None)
    assert meta["allow_tf32_matmul"] is False and meta["float32_matmul_precision"] == "highest"
    with pytest.raises(SystemExit):
        R.main(["--tf32"])  # never into the course's reference folder


@pytest.mark.slow
def test_gpu_measure_script_runs_and_returns_what_the_device_sends_back(tmp_path):
    """A CPU dry run on tiny sizes: every step succeeds and at most 8 files come back."""
    env = {**os.environ, "DEVICE": "cpu", "PYTHON": sys.executable, "ROOFLINE_ARGS": "--quick --repeats 1",
           "BENCH_ARGS": "--lengths 8 16 --repeats 1 --new-tokens 2 --gqa-length 32 --e2e-lengths 8 "
                         "--e2e-new-tokens 2 --no-hf"}
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_measure.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    log = (out / "log.txt").read_text()
    assert log.count(": exit 0 after") == 4, log[-3000:]
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert len(files) <= 8 and all(len(f.parts) <= 3 for f in files), files
    assert json.loads((out / "tf32" / "lab01_refs_meta.json").read_text())["allow_tf32_matmul"] is True
    bench = json.loads((out / "gpu_lab01_bench.json").read_text())
    assert bench["meta"]["device"] == "cpu" and [r["S"] for r in bench["decode"]] == [8, 16]
    roof = json.loads((out / "gpu_roofline.json").read_text())
    assert roof["meta"]["device"] == "cpu" and len(roof["probes"]) == 5
