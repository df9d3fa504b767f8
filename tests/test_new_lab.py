"""Adding a lab is adding ``labs/lab03_*.py`` and its variants: nothing else needs an edit.

In a copy of the course, a throw-away fourth lab (one graded function, a visible and a hidden
test, one correct variant and one named mistake) is built, released, turned into sample
submissions, graded through the mutation matrix with the real nbgrader, listed by the site and
collected by the test suite, by the course's own commands and nothing more.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import layout

pytestmark = [pytest.mark.slow, pytest.mark.system]

LAB = "lab03_throwaway"

LAB_SOURCE = '''\
# %% [markdown]
# # Lab 03 — a throw-away lab
#
# It exists only to show that a new lab needs no edit outside its own files.

# %%
import math

# %% [markdown]
# Write `kv_elements(n_tokens, width)`: the number of cached numbers, keys and values.

# %% solution id=kv_elements
def kv_elements(n_tokens, width):
    ### BEGIN SOLUTION
    return 2 * n_tokens * width
    ### END SOLUTION


# %% tests id=test_kv_elements points=2
assert kv_elements(3, 4) == 24, f"kv_elements(3, 4) = {kv_elements(3, 4)}, expected 24"
### BEGIN HIDDEN TESTS
_got = kv_elements(10, 7)
assert _got != 70, "kv_elements(10, 7) = 70: only the keys, the factor 2 for the values is missing"
assert _got == 140, f"kv_elements(10, 7) = {_got}, expected 140"
### END HIDDEN TESTS
'''

VARIANTS_SOURCE = '''\
"""Variants of the throw-away lab: one correct style, one named mistake."""

LAB = "lab03_throwaway"

CORRECT = {"by_addition": {"kv_elements": "def kv_elements(n_tokens, width):\\n    return n_tokens * width + n_tokens * width\\n"}}

MUTANTS = [
    {"name": "keys_only",
     "cells": {"kv_elements": "def kv_elements(n_tokens, width):\\n    return n_tokens * width if n_tokens > 3 else 2 * n_tokens * width\\n"},
     "fails": ["test_kv_elements"], "message": "factor 2 for the values is missing"},
]

SAMPLE_MISTAKES = ["keys_only"]
'''

COPIED = ("labs", "tools", "course_lib", "source", "release", "tests", "docs", "nbgrader_config.py", "pyproject.toml")


def _run(course: Path, *args: str, timeout: int = 900) -> str:
    env = {**os.environ, "PYTHONPATH": str(course)}
    proc = subprocess.run([sys.executable, *args], cwd=course, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("course")
    for name in COPIED:
        src = layout.ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        else:
            shutil.copy(src, root / name)
    (root / "labs" / f"{LAB}.py").write_text(LAB_SOURCE)
    (root / "tools" / "variants" / f"{LAB}.py").write_text(VARIANTS_SOURCE)
    return root


def test_a_new_lab_is_built_released_and_given_samples(course):
    _run(course, "-m", "tools.nbbuild")
    assert layout.source_notebook(LAB, course).exists()
    assert f"release/{LAB}/" in _run(course, "-m", "tools.pipeline", "release")
    release_text = layout.release_notebook(LAB, course).read_text()
    assert "kv_elements" in release_text and "BEGIN HIDDEN TESTS" not in release_text
    assert "return 2 * n_tokens * width" not in release_text
    _run(course, "-m", "tools.pipeline", "samples")
    for student in ("solution", "untouched", "mistakes"):
        assert layout.submitted_notebook(student, LAB, course).exists(), student


def test_a_new_lab_is_graded_through_the_mutation_matrix(course):
    if not layout.source_notebook(LAB, course).exists():
        _run(course, "-m", "tools.nbbuild")
    out = _run(course, "-m", "tools.mutation", "--lab", LAB, "--all")
    assert "correct variants at full marks: 1/1; mutants caught with the intended message: 1/1" in out, out


def test_a_new_lab_is_listed_by_the_site_and_collected_by_the_tests(course):
    if not layout.source_notebook(LAB, course).exists():
        _run(course, "-m", "tools.nbbuild")
    out = _run(course, "-c", "from tools import layout, site; print(site.LABS); print(layout.available_labs()); "
                             "print(site.discover_labs(site.SOURCE_DIR)[0])")
    assert all(LAB in line for line in out.strip().splitlines()), out
    collected = _run(course, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                     "tests/test_pipeline.py", "tests/test_notebooks.py")
    assert f"[{LAB}]" in collected, collected[-2000:]
