"""Grading the course's own submissions with two workers on a PostgreSQL gradebook.

The demo's submissions (every lab's solution, untouched release and sample mistakes, two
tampering attempts, one broken notebook) are autograded by ``pipeline.autograde(workers=2)``
into a PostgreSQL gradebook named in the course's ``nbgrader_config.py``, checked by
``pipeline.check_integrity`` and reported by ``pipeline.report`` in a later step, as
``make autograde GRADE_WORKERS=2`` then ``make report`` would. The grades must be those of the
serial SQLite run (the session's ``graded_course``). Real nbgrader and a real PostgreSQL server.
"""

from __future__ import annotations

import collections
import re
import shutil

import pytest

from tools import classroom, pipeline
from tools.samples import ROOT, write_samples

# real nbgrader on every sample submission, and a PostgreSQL server (Debian package)
pytestmark = [pytest.mark.slow, pytest.mark.system]

TAMPERED = ("tamper-rebind-checker", "tamper-input-transformer")


@pytest.fixture(scope="module")
def parallel_course(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    shutil.copytree(ROOT / "source", root / "source")
    cluster = classroom.PostgresCluster(root)
    url = cluster.start()
    config = (ROOT / "nbgrader_config.py").read_text()
    (root / "nbgrader_config.py").write_text(config + f"\nc.CourseDirectory.db_url = {url!r}\n")
    try:
        assert pipeline.gradebook_db_url(root) == url
        pipeline.release(root)
        write_samples(root, extras=True)
        runs = pipeline.autograde(root, verbose=False, workers=2)
        pipeline.check_integrity(root, runs, verbose=False)
        rows = {(r.student, r.lab): r for r in pipeline.report(root)}  # a later step: verdicts from disk
        yield root, url, runs, rows
    finally:
        cluster.destroy()


def test_both_workers_graded_a_share(parallel_course):
    _, _, runs, _ = parallel_course
    assert {r.worker for r in runs} == {0, 1}
    assert len({(r.student, r.lab) for r in runs}) == len(runs)


def test_grades_equal_the_serial_sqlite_run(parallel_course, graded_course):
    _, _, _, rows = parallel_course
    _, serial_rows, _ = graded_course
    assert serial_rows
    for s in serial_rows:
        p = rows[(s.student, s.lab)]
        assert (p.status, p.auto_score, p.auto_max, p.manual_max, p.failed_tests, p.integrity) == \
            (s.status, s.auto_score, s.auto_max, s.manual_max, s.failed_tests, ""), (s.student, s.lab)


@pytest.mark.parametrize("student", TAMPERED)
def test_tampering_is_held_in_the_postgres_gradebook(parallel_course, student):
    from nbgrader.api import Gradebook

    _, url, _, rows = parallel_course
    row = rows[(student, "lab00_cache_sizing")]
    assert row.auto_score == 0 and row.integrity.startswith("HELD"), (row.auto_score, row.integrity)
    with Gradebook(url) as gb:  # what nbgrader's formgrader and exports read
        assert gb.find_submission("lab00_cache_sizing", student).score == 0


def test_broken_submission_reported_with_feedback(parallel_course):
    root, _, _, rows = parallel_course
    row = rows[("broken-invalid-json", "lab00_cache_sizing")]
    assert row.status.startswith("not graded"), row.status
    html = (root / "feedback" / "broken-invalid-json" / "lab00_cache_sizing" / "lab00_cache_sizing.html").read_text()
    assert "could not be graded" in html


def test_workers_refuse_a_sqlite_gradebook(graded_course):
    root, _, _ = graded_course
    with pytest.raises(ValueError, match="SQLite is not safe for concurrent writers"):
        pipeline.autograde(root, [("solution", "lab00_cache_sizing"), ("untouched", "lab00_cache_sizing")],
                           verbose=False, workers=2)
    with pytest.raises(ValueError, match="workers must be"):
        pipeline.autograde(root, [], verbose=False, workers=0)


def test_class_report_content(parallel_course):
    root, _, _, rows = parallel_course
    text = (root / "report.html").read_text()
    assert text.count("src='data:image/png;base64,") == 2 * len({lab for _, lab in rows})
    mistakes = text.split("id='mistakes'")[1].split("id='integrity'")[0]
    # the table ranks (lab, test, mistake) by how many students made it and shows the top 25;
    # in this small class most counts tie, so it must be full and hold the most common one
    counts = collections.Counter((r.lab, t, m) for r in rows.values() for t, m in r.failed_tests.items())
    assert any(m == "not answered (NotImplementedError)" for _, _, m in counts)
    shown = [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", mistakes)]
    assert len(shown) == min(25, len(counts)), mistakes[:300]
    assert shown == sorted(shown, reverse=True), shown
    held = text.split("id='integrity'")[1].split("id='problems'")[0]
    assert "(2 held for review)" in held and all(f"<td>{s}</td>" in held for s in TAMPERED)
    assert "<td>broken-invalid-json</td>" in text.split("id='problems'")[1]


@pytest.mark.browser
def test_class_report_in_a_browser(parallel_course, browser):
    """The report opens in Chromium: every figure decodes, nothing errors or leaves the machine."""
    import browser_support as B

    root, _, _, _ = parallel_course
    with B.serve_directory(root) as base:
        context = browser.new_context(viewport=B.VIEWPORT)
        page = context.new_page()
        watch = B.PageWatch().attach(page)
        page.goto(f"{base}report.html", wait_until="load")
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
        headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.innerText)")
        B.screenshot(page, "class-report")
        context.close()
    assert widths and all(w > 0 for w in widths), widths
    assert "Most common mistakes" in headings and any(h.startswith("Integrity check") for h in headings)
    assert watch.problems() == []
