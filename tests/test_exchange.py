"""nbgrader's exchange round trip with the JupyterHub config (tools/jupyterhub/nbgrader_config.py):
release -> fetch -> submit -> collect -> autograde, students as their own Unix users when root."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from tools import classroom, exchange

# real nbgrader through the exchange; students as their own Unix users when root
pytestmark = [pytest.mark.slow, pytest.mark.system]

LAB = "lab00_cache_sizing"
STUDENTS = {"kvstudent1": "solution", "kvstudent2": "mutant:weights_not_subtracted"}


@pytest.fixture(scope="module")
def trip():
    # not tmp_path: pytest's folder is closed to other users, and students must reach theirs
    workdir = Path(tempfile.mkdtemp(prefix="kvcourse-exchange-test-"))
    workdir.chmod(0o755)
    try:
        scores, rt = exchange.round_trip(workdir / "trip", LAB, STUDENTS)
        yield scores, rt
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_round_trip_grades_each_student(trip):
    scores, rt = trip
    course = rt.course
    assert set(scores) == set(STUDENTS)
    for student, variant in STUDENTS.items():
        expected = sum(classroom.declared_expectation(course, LAB, variant).values())
        assert scores[student] == expected, (student, variant)
    assert scores["kvstudent1"] > scores["kvstudent2"]
    for student in STUDENTS:
        folder = course / "submitted" / student / LAB
        assert (folder / f"{LAB}.ipynb").exists() and (folder / "timestamp.txt").read_text().strip()
        assert (course / "autograded" / student / LAB / f"{LAB}.ipynb").exists()
    steps = [line.split()[3] for line in rt.log]
    assert steps == ["release_assignment", "fetch_assignment", "submit", "fetch_assignment", "submit",
                     "collect", "autograde"]


def test_exchange_layout_and_users(trip):
    _, rt = trip
    outbound = rt.exchange / "kv-cache-course" / "outbound" / LAB / f"{LAB}.ipynb"
    assert outbound.exists()
    assert "BEGIN HIDDEN TESTS" not in outbound.read_text()  # the release, not the source
    inbound = sorted((rt.exchange / "kv-cache-course" / "inbound").iterdir())
    assert [p.name.split("+")[0] for p in inbound] == sorted(STUDENTS)
    if os.geteuid() == 0:
        assert rt.multi_user
        for p in inbound:  # each submission was made by its student's own Unix account
            assert pwd.getpwuid(p.stat().st_uid).pw_name == p.name.split("+")[0]
