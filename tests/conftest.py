"""Shared fixtures: one scratch course, graded once per test session."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# nbgrader runs `alembic` from PATH
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture(scope="session")
def graded_course(tmp_path_factory):
    """A copy of the course with release/ regenerated, the sample submissions written and
    autograded, feedback generated. Returns (root, rows, runs)."""
    from tools import pipeline
    from tools.samples import write_samples

    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "source", root / "source")
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    pipeline.release(root)
    write_samples(root, extras=False)  # tampering and broken ones: tests/test_integrity.py
    runs = pipeline.autograde(root, verbose=False)
    pipeline.feedback(root)
    rows = pipeline.collect_grades(root, runs)
    return root, rows, runs


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (tests/browser_support.py); never a downloaded browser."""
    import browser_support as B

    if B.chromium_path() is None:
        pytest.fail("Chromium is not installed: run `bash tools/install_system_deps.sh`")
    with B.chromium() as br:
        yield br

