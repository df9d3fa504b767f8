"""JupyterLab smoke test: the notebooks as a student opens them, in a real browser.

JupyterLab is started from this venv on 127.0.0.1 with a token (per-run configuration, no news
prompt) and driven in Debian's headless Chromium (tests/browser_support.py). For each lab:

- the RELEASE notebook (what students get): Run All, going on below each error as a student
  would. course_lib imports; every ``YOUR CODE HERE`` stub raises NotImplementedError; every
  graded test cell fails; nbgrader's Validate button opens a "failed" dialog. Then every
  function stub is changed to ``return None`` (a student who forgot ``return``) and the tests
  must fail with the course's own assertion messages, not with a TypeError from deep inside;
- the SOURCE notebook (instructor version with solutions and hidden tests): Run All passes
  with no error output, and Validate reports success.

The release notebooks come from release/ when it matches the current source notebooks;
otherwise they are generated afresh into a temporary course with the course's
``tools.pipeline.release`` (real ``nbgrader generate_assignment``), never into release/.
Screenshots: build/screenshots/jupyterlab-<lab>-{release,source}.png.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import browser_support as B
import nbformat
import pytest

from tools.site import RELEASE_DIR, ROOT, SOURCE_DIR, discover_labs, release_from_source

LABS, MISSING = discover_labs(SOURCE_DIR)

_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt))(?::|\s*$)")
_STUB = re.compile(r"^(?P<indent>[ \t]+)raise NotImplementedError\(\)", re.M)


def exception_name(text: str) -> str:
    """The exception named on the last ``Name: message`` line of a traceback ('' if none)."""
    names = [m.group(1) for line in text.splitlines() if (m := _EXC_LINE.match(line.strip("\r")))]
    return names[-1].rsplit(".", 1)[-1] if names else ""


def tracebacks(cell: dict[str, Any]) -> list[str]:
    """Error outputs (tracebacks) of a cell as read from the DOM, without plain stderr text."""
    return [e for e in cell["errors"] if "Traceback" in e or exception_name(e)]


def _nbgrader(cell: Any) -> dict[str, Any]:
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def _release_is_current(lab: str) -> bool:
    path = RELEASE_DIR / lab / f"{lab}.ipynb"
    if not path.exists():
        return False
    expected = release_from_source(nbformat.read(SOURCE_DIR / lab / f"{lab}.ipynb", as_version=4))
    got = nbformat.read(path, as_version=4)
    return [c.source for c in got.cells] == [c.source for c in expected.cells]


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away Jupyter root holding release/<lab>/ and source/<lab>/ copies."""
    if not LABS:
        pytest.fail("no lab notebooks in source/: run `python -m tools.nbbuild` first")
    root = tmp_path_factory.mktemp("jupyter-root")
    stale = [lab for lab in LABS if not _release_is_current(lab)]
    if stale:
        from tools.pipeline import release

        scratch = tmp_path_factory.mktemp("course")
        shutil.copy(ROOT / "nbgrader_config.py", scratch / "nbgrader_config.py")
        for lab in LABS:
            shutil.copytree(SOURCE_DIR / lab, scratch / "source" / lab)
        release(scratch)
        print(f"release/ missing or out of date for {stale}: generated a fresh release "
              f"into {scratch}")
    for lab in LABS:
        release_src = (scratch if lab in stale else ROOT) / "release" / lab
        shutil.copytree(release_src, root / "release" / lab)
        shutil.copytree(SOURCE_DIR / lab, root / "source" / lab,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return root


#: By default the kernels run with NBGRADER_EXECUTION=validate, as under nbgrader's Validate
#: button: the labs' ungraded benchmarks shrink (course_lib.timing.is_autograding) and no
#: progress bars are drawn, which keeps this test to a few minutes on 2 cores. Set
#: COURSE_SMOKE_FULL=1 to run the notebooks exactly as a student's kernel does.
SMOKE_ENV = {} if os.environ.get("COURSE_SMOKE_FULL") == "1" else {"NBGRADER_EXECUTION": "validate"}


@pytest.fixture(scope="module")
def jupyter(course: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[B.JupyterLab]:
    with B.JupyterLab(course, tmp_path_factory.mktemp("jupyter-state"),
                      kernel_env=SMOKE_ENV) as lab:
        yield lab


def _open(browser: Any, jupyter: B.JupyterLab, rel: str) -> tuple[B.NotebookDriver, Any,
                                                                 B.PageWatch, Any]:
    nb = nbformat.read(jupyter.root_dir / rel, as_version=4)
    context = browser.new_context(viewport=B.VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    watch = B.PageWatch().attach(page)
    driver = B.NotebookDriver(page, len(nb.cells), timeout_ms=300_000).open(jupyter.url(rel))
    return driver, nb, watch, context


def test_helpers_read_tracebacks() -> None:
    tb = ("---------------------------------------------------------------------------\n"
          "NotImplementedError                       Traceback (most recent call last)\n"
          "Cell In[3], line 2\n      1 # YOUR CODE HERE\n----> 2 raise NotImplementedError()\n\n"
          "NotImplementedError: ")
    assert exception_name(tb) == "NotImplementedError"
    answer = ("AnswerError                               Traceback (most recent call last)\n"
              "AnswerError: f(1) returned 8, expected 1 (8x too large).\n"
              "  Likely mistake: bits instead of bytes")
    assert exception_name(answer) == "AnswerError"
    assert exception_name("course_lib.grading.AnswerError: x") == "AnswerError"
    assert exception_name("100%|██████| 10/10 [00:01<00:00]") == ""


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("lab", LABS)
def test_release_notebook_in_jupyterlab(lab: str, browser: Any, jupyter: B.JupyterLab) -> None:
    t0 = time.perf_counter()
    rel = f"release/{lab}/{lab}.ipynb"
    driver, nb, watch, context = _open(browser, jupyter, rel)
    try:
        cells = driver.run_all()
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        solutions = [i for i in code if _nbgrader(nb.cells[i]).get("solution")]
        tests = [i for i in code if _nbgrader(nb.cells[i]).get("grade")]
        assert solutions and tests, f"{rel}: no solution or test cells found (not a release?)"
        assert all("YOUR CODE HERE" in nb.cells[i].source for i in solutions), \
            f"{rel}: a solution cell has no YOUR CODE HERE stub"
        problems: list[str] = []

        # Every code cell ran (has an execution count).
        not_run = [i for i in code if not re.fullmatch(r"\[\d+\]:", cells[i]["prompt"])]
        if not_run:
            problems.append(f"cells never ran: {not_run} (prompts {[cells[i]['prompt'] for i in not_run]})")

        # course_lib imports, and everything before the first task runs cleanly.
        imports = [i for i in code if re.search(r"^\s*(from|import)\s+course_lib", nb.cells[i].source, re.M)]
        if not imports:
            problems.append("no cell imports course_lib")
        for i in [i for i in code if i < solutions[0]]:
            if tracebacks(cells[i]):
                problems.append(f"cell {i} (before the first task) failed: "
                                f"{tracebacks(cells[i])[0][-300:]}")

        # Nothing is missing from the release (no import or file errors anywhere; later cells
        # may fail for other reasons, as they use the student's unfinished functions).
        for i in code:
            for tb in tracebacks(cells[i]):
                if exception_name(tb) in ("ModuleNotFoundError", "ImportError",
                                          "FileNotFoundError", "SyntaxError"):
                    problems.append(f"cell {i}: {exception_name(tb)}: {tb[-300:]}")

        # Each YOUR CODE HERE stub raises NotImplementedError: a top-level stub in its own
        # cell; a stub inside a function when a later cell calls that function (the
        # traceback then names it).
        for i in solutions:
            grade_id = _nbgrader(nb.cells[i]).get("grade_id")
            if re.search(r"^raise NotImplementedError", nb.cells[i].source, re.M):
                if "NotImplementedError" not in [exception_name(t) for t in tracebacks(cells[i])]:
                    problems.append(f"solution cell {i} ({grade_id}) did not raise "
                                    "NotImplementedError")
                continue
            names = re.findall(r"^\s*def\s+(\w+)\s*\(", nb.cells[i].source, re.M)
            raised = [j for j in code if j >= i for tb in tracebacks(cells[j])
                      if exception_name(tb) == "NotImplementedError"
                      and any(f"{name}(" in tb for name in names)]
            if not raised:
                problems.append(f"solution cell {i} ({grade_id}): no later cell raised "
                                f"NotImplementedError from {names}")

        # Every graded test cell fails in the untouched release.
        for j in tests:
            if not tracebacks(cells[j]):
                problems.append(f"test cell {j} ({_nbgrader(nb.cells[j]).get('grade_id')}) "
                                "passed although nothing is implemented")

        # nbgrader's Validate button exists and reports failures.
        kind, text = driver.validate()
        if kind != "failed" or "failed" not in text:
            problems.append(f"Validate said {kind!r} on an unsolved release: {text[:300]}")

        # A student who forgot `return`: the tests must answer with the course's messages.
        stubbed = [i for i in solutions if _STUB.search(nb.cells[i].source)]
        for i in stubbed:
            driver.set_cell_text(i, _STUB.sub(r"\g<indent>return None", nb.cells[i].source))
        if stubbed:
            cells = driver.run_all()
            friendly = 0
            for j in tests:
                names = [exception_name(tb) for tb in tracebacks(cells[j])]
                texts = "\n".join(tracebacks(cells[j]))
                if not names:
                    problems.append(f"test cell {j} passed with every function returning None")
                elif names[-1] not in ("AnswerError", "AssertionError", "NotImplementedError"):
                    problems.append(f"test cell {j} ({_nbgrader(nb.cells[j]).get('grade_id')}) "
                                    f"failed with {names[-1]}, not the course's assertion message: "
                                    f"{texts[-300:]}")
                friendly += "did you forget the `return` statement" in texts
            if friendly == 0:
                problems.append("no test cell told the student 'did you forget the `return` "
                                "statement?' when the functions returned None")
        _finish(driver, watch, rel, f"jupyterlab-{lab}-release", problems)
    finally:
        context.close()
    print(f"{rel}: {time.perf_counter() - t0:.1f} s")


def _finish(driver: Any, watch: Any, rel: str, shot: str, problems: list[str]) -> None:
    """Screenshot, then fail with every problem found (requests leaving the machine included)."""
    B.screenshot(driver.page, shot)
    if watch.external_requests:
        problems.append(f"requests left 127.0.0.1: {watch.external_requests[:5]}")
    assert not problems, f"{rel} in JupyterLab:\n- " + "\n- ".join(problems)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("lab", LABS)
def test_source_notebook_in_jupyterlab(lab: str, browser: Any, jupyter: B.JupyterLab) -> None:
    t0 = time.perf_counter()
    rel = f"source/{lab}/{lab}.ipynb"
    driver, nb, watch, context = _open(browser, jupyter, rel)
    try:
        cells = driver.run_all(continue_after_errors=True)
        problems = []
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if not re.fullmatch(r"\[\d+\]:", cells[i]["prompt"]):
                problems.append(f"cell {i} did not run (prompt {cells[i]['prompt']!r})")
            if tracebacks(cells[i]):
                problems.append(f"cell {i} failed: {tracebacks(cells[i])[0][-400:]}")
            elif _nbgrader(cell).get("grade") and cells[i]["errors"]:
                problems.append(f"test cell {i} wrote to stderr (nbgrader scores that 0): "
                                f"{cells[i]['errors'][0][:200]}")
        kind, text = driver.validate()
        if kind != "success":
            problems.append(f"Validate on the source notebook said {kind!r}: {text[:400]}")
        _finish(driver, watch, rel, f"jupyterlab-{lab}-source", problems)
    finally:
        context.close()
    print(f"{rel}: {time.perf_counter() - t0:.1f} s")
