"""The formgrader as an instructor uses it, in a real browser, with no internet.

A small Lab 00 course (tests/hand_grading_course.py: the solution and a tampering attempt,
graded with the real nbgrader; the integrity check holds the tampering one) is opened in
JupyterLab started the way ``python -m tools.formgrader`` starts it (the local MathJax 2
served), and driven in Debian's headless Chromium (tests/browser_support.py):

- **Nbgrader > Formgrader** opens nbgrader's formgrader with no exchange warning, and the server
  logs no "Unwritable directory" (nbgrader_config.py gives a one-machine course its exchange);
- **Manual Grading** lists both submissions, the held one flagged; its grading page shows the
  integrity check's reason in the comment of its first answer cell;
- on the solution's grading page the instructor types points into each written answer's score
  box and moves on (Tab), and the page saves them; the course's report (``pipeline.report``,
  what ``make report`` runs) then has them in grades.csv and report.html, and the LMS export
  (``tools.lms``'s ``canvas`` command, which ``make lms`` runs) has the total;
- every grading page has its math typeset by the local MathJax (the lab text and the written
  answers): no TeX error, no raw ``$``, ``\\(`` or ``$$`` left, and no request ever leaves
  127.0.0.1.

Screenshots: build/screenshots/formgrader-{assignments,held,graded}.png.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser_support as B
import pytest
from hand_grading_course import LAB, SOLUTION, TAMPERED, build, html_row

from tools import formgrader, lms, pipeline

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _points_to_give(answers: dict[str, float]) -> dict[str, float]:
    """The points the instructor gives each written answer: below its maximum and not whole, so
    that neither "no credit", "full credit" nor a rounded value could pass for them."""
    return {name: points - 1.5 if i == 0 else points - 0.5 for i, (name, points) in enumerate(answers.items())}


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    return build(tmp_path_factory.mktemp("formgrader-course"), [SOLUTION, TAMPERED])


@pytest.fixture(scope="module")
def lab(course: tuple[Path, dict[str, float]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[B.JupyterLab]:
    root, _ = course
    served = formgrader.ensure_mathjax2()
    with B.JupyterLab(root, tmp_path_factory.mktemp("formgrader-state"),
                      server_args=formgrader.server_args(served)) as server:
        yield server


@pytest.fixture(scope="module")
def session(browser: Any, lab: B.JupyterLab) -> Iterator[tuple[Any, B.PageWatch]]:
    """JupyterLab open in Chromium with nbgrader's Formgrader tab (Nbgrader > Formgrader)."""
    context = browser.new_context(viewport=B.VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    watch = B.PageWatch().attach(page)
    page.goto(f"{lab.base}/lab?reset&token={lab.token}")
    page.locator(".lm-MenuBar-itemLabel").filter(has_text=re.compile("^Nbgrader$")).click()
    page.locator(".lm-Menu-itemLabel").filter(has_text=re.compile("^Formgrader$")).click()
    page.frame_locator("iframe").locator("#warning-exchange, table").first.wait_for()
    yield page, watch
    context.close()


def _frame(page: Any) -> Any:
    """The formgrader's frame (the Formgrader tab's iframe)."""
    frame = page.locator("iframe").first.element_handle().content_frame()
    assert frame is not None, "the Formgrader tab has no frame"
    return frame


def _offline(watch: B.PageWatch, lab: B.JupyterLab) -> list[str]:
    """What went wrong so far: requests leaving the machine, errors, exchange complaints."""
    problems = watch.problems()
    log = lab.log_path.read_text(errors="replace")
    problems += [f"server log: {line}" for line in log.splitlines() if "Unwritable directory" in line]
    return problems


# --------------------------------------------------------------------------- the pages


def _submissions(frame: Any) -> dict[str, dict[str, Any]]:
    """Manual Grading > the lab > its notebook, names shown: student -> {flagged, href}."""
    frame.get_by_role("link", name="Manual Grading", exact=True).first.click()
    frame.get_by_role("link", name=LAB, exact=True).first.click()
    frame.wait_for_url(re.compile(f"/formgrader/gradebook/{LAB}/?$"))
    frame.get_by_role("link", name=LAB, exact=True).first.click()
    frame.wait_for_url(re.compile(f"/formgrader/gradebook/{LAB}/{LAB}/?$"))
    frame.locator("a.name-shown").first.wait_for(state="attached")
    frame.locator("#toggle_names").click()
    return {row["student"]: row for row in frame.evaluate("""() =>
        Array.from(document.querySelectorAll('tbody tr')).filter(r => r.querySelector('a.name-shown'))
          .map(r => ({student: r.querySelector('a.name-shown').textContent.trim(),
                      href: r.querySelector('a.name-shown').href,
                      flagged: !!r.querySelector('.flagged .glyphicon-flag')}))""")}


def _open_submission(frame: Any, student: str, watch: B.PageWatch) -> dict[str, Any]:
    """Click the student's submission in the list; return the page's math report once typeset."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    frame.locator("a.name-shown", has_text=re.compile(f"^{re.escape(student)}$")).click()
    frame.wait_for_url(re.compile("/formgrader/submissions/[^/]+/"))
    frame.locator(".nbgrader_cell").first.wait_for()
    try:
        return wait_for_mathjax2(frame)
    except PlaywrightTimeout:
        pytest.fail(f"MathJax never typeset {student}'s grading page: {watch.problems()}")


_MATHJAX2_REPORT_JS = """() => {
  const math = '.MathJax_CHTML';
  const errors = '.mjx-merror, .noError, .mjx-noError, ' + math + ' [style*="color: red"]';
  const prose = Array.from(document.querySelectorAll('.text_cell_render')).map(cell => {
    const clone = cell.cloneNode(true);
    clone.querySelectorAll('pre, code, script, style, .MathJax_Preview, ' + math).forEach(n => n.remove());
    return clone.innerText;
  }).join('\\n');
  const answers = {};
  document.querySelectorAll('.nbgrader_cell').forEach(cell => {
    const box = cell.querySelector('input.score');
    if (box && cell.querySelector('.text_cell_render')) answers[box.id] = cell.querySelectorAll(math).length;
  });
  return {
    mathjax: window.MathJax && MathJax.version,
    root: window.MathJax && MathJax.Ajax && MathJax.Ajax.config.root,
    containers: document.querySelectorAll(math).length,
    errors: document.querySelectorAll(errors).length,
    answers: answers,
    text: prose,
  };
}"""


def wait_for_mathjax2(frame: Any, timeout_ms: int = 30_000) -> dict[str, Any]:
    """Wait until MathJax 2 (what nbgrader's grading page is written for) has typeset the page.

    The checks of :func:`browser_support.wait_for_math` for MathJax 2's CommonHTML output:
    ``containers`` (typeset formulas), ``errors`` (TeX errors, and undefined macros, which MathJax
    draws in red), ``answers`` (formulas in each written answer, by its grade id), ``text`` (the
    markdown cells' text without code and typeset math, to search for raw delimiters),
    ``mathjax`` (its version) and ``root`` (where it was loaded from). Raises Playwright's
    TimeoutError if MathJax never loads or never finishes.
    """
    frame.wait_for_function("() => window.MathJax && MathJax.isReady && MathJax.Hub", timeout=timeout_ms)
    frame.evaluate("() => new Promise(done => MathJax.Hub.Queue(done))")
    return dict(frame.evaluate(_MATHJAX2_REPORT_JS))


def _math_problems(report: dict[str, Any], answers: list[str]) -> list[str]:
    problems = []
    if report["containers"] == 0:
        problems.append("no typeset math on the page")
    if report["errors"]:
        problems.append(f"{report['errors']} TeX errors or undefined macros")
    if B.raw_math_left(report["text"]):
        problems.append(f"raw TeX left: {B.raw_math_left(report['text'])[:5]}")
    if not re.match(r"http://127\.0\.0\.1:\d+/static/mathjax$", str(report["root"])):
        problems.append(f"MathJax {report['mathjax']} came from {report['root']}, not the local copy")
    untypeset = [name for name in answers if not report["answers"].get(name)]
    if untypeset:
        problems.append(f"written answers with no typeset math: {untypeset}")
    return problems


def _give_points(page: Any, frame: Any, grade_id: str, points: float) -> dict[str, Any]:
    """Type ``points`` into the answer's score box and press Tab, as an instructor does; wait for
    the page to save it (its PUT to the formgrader's grade API) and return what the server stored."""
    box = frame.locator(f"input.score#{grade_id}")
    box.scroll_into_view_if_needed()
    box.click()
    page.keyboard.type(f"{points:g}")
    with page.expect_response(lambda r: "/formgrader/api/grade/" in r.url and r.request.method == "PUT") as saved:
        page.keyboard.press("Tab")
    assert saved.value.status == 200, f"saving {grade_id}: HTTP {saved.value.status}"
    return dict(saved.value.json())


# --------------------------------------------------------------------------- the tests


def test_the_formgrader_opens_with_no_exchange_warning(session: tuple[Any, B.PageWatch], lab: B.JupyterLab) -> None:
    page, watch = session
    frame = _frame(page)
    frame.wait_for_url(re.compile("/formgrader/manage_assignments"))
    frame.locator("table tbody tr", has_text=LAB).first.wait_for()
    B.screenshot(page, "formgrader-assignments")
    warnings = frame.locator("#warning-exchange, #warning-course-id").all_inner_texts()
    assert not warnings, f"the formgrader warns: {warnings}"
    assert not _offline(watch, lab)


def test_a_held_submission_is_flagged_with_its_reason(session: tuple[Any, B.PageWatch], lab: B.JupyterLab,
                                                      course: tuple[Path, dict[str, float]]) -> None:
    page, watch = session
    root, _ = course
    frame = _frame(page)
    listed = _submissions(frame)
    assert set(listed) == {SOLUTION, TAMPERED}, listed
    assert listed[TAMPERED]["flagged"] and not listed[SOLUTION]["flagged"], listed

    math = _open_submission(frame, TAMPERED, watch)
    cell = pipeline._first_solution_cell(root, LAB)
    comment = frame.locator(f"textarea#{cell}-comment")
    frame.wait_for_function("() => jQuery(':animated').length === 0")  # the page's own scrolling
    comment.evaluate("box => box.scrollIntoView({block: 'center'})")
    reason = comment.input_value()
    B.screenshot(page, "formgrader-held")
    assert comment.is_visible(), "the comment with the hold's reason is not shown"
    assert reason.startswith(pipeline.HOLD_COMMENT_MARK + " HELD for review") and "check_int" in reason, reason
    problems = _math_problems(math, [])
    assert not problems + _offline(watch, lab), problems + _offline(watch, lab)


def test_points_given_in_the_formgrader_reach_grades_the_report_and_the_lms(
        session: tuple[Any, B.PageWatch], lab: B.JupyterLab, course: tuple[Path, dict[str, float]],
        tmp_path: Path) -> None:
    page, watch = session
    root, answers = course
    given = _points_to_give(answers)
    frame = _frame(page)
    _submissions(frame)
    math = _open_submission(frame, SOLUTION, watch)
    problems = _math_problems(math, list(answers))
    for name, points in given.items():
        stored = _give_points(page, frame, name, points)
        assert (stored["manual_score"], stored["needs_manual_grade"]) == (points, False), stored
    B.screenshot(page, "formgrader-graded")
    assert not problems + _offline(watch, lab), problems + _offline(watch, lab)

    t0 = time.perf_counter()
    rows = {r.student: r for r in pipeline.report(root)}  # what `make report` runs
    row = rows[SOLUTION]
    hand, hand_max = sum(given.values()), sum(answers.values())
    with (root / pipeline.GRADES_CSV).open(newline="") as f:
        line = next(r for r in csv.DictReader(f) if r["student"] == SOLUTION)
    assert (line["hand_graded_points"], line["hand_graded_max"], line["answers_not_hand_graded"],
            line["total_points"], line["total_is"]) == \
        (f"{hand:g}", f"{hand_max:g}", "", f"{row.auto_max + hand:g}", "final"), line
    html = (root / "report.html").read_text()
    assert html_row(SOLUTION, f"{row.auto_max:g} / {row.auto_max:g}", f"{hand:g} / {hand_max:g}",
                    f"{row.auto_max + hand:g} / {row.total_max:g}") in html

    ids = tmp_path / "ids.csv"
    ids.write_text("nbgrader_id,Student,ID,SIS User ID,SIS Login ID,Section\n"
                   f"{SOLUTION},\"Doe, Jane\",1001,S1001,jdoe,A\n{TAMPERED},\"Roe, Rick\",1002,S1002,rroe,A\n")
    out = tmp_path / "canvas_grades.csv"
    assert lms.main(["canvas", "--map", str(ids), "--out", str(out), "--root", str(root),
                     "--allow-provisional"]) == 0  # the held submission is provisional
    with out.open(newline="") as f:
        exported = {r["ID"]: r for r in csv.DictReader(f)}
    assert exported["1001"][lms.lab_title(LAB)] == f"{row.auto_max + hand:g}", exported["1001"]
    print(f"report and LMS export: {time.perf_counter() - t0:.1f} s")
