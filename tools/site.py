"""Build the course website: the labs rendered with their solutions, outputs and plots.

Usage (from the repository root):

    python -m tools.site              solutions site -> build/site/index.html
    python -m tools.site --student    student-safe site (release notebooks, no solutions,
                                      not executed) -> build/site-student/index.html
    python -m tools.site --strict     turn Sphinx warnings into errors (the tests use this)
    python -m tools.site --rerun      execute the notebooks again even if the cache is valid

How the solutions site is made, for every lab found in ``source/`` (a lab that is missing is
skipped with a note, on the console and on the landing page):

1. read ``source/<lab>/<lab>.ipynb``; remove the hidden tests (the lines from
   ``### BEGIN HIDDEN TESTS`` to ``### END HIDDEN TESTS``), drop the ``### BEGIN/END SOLUTION``
   marker lines (the solution code stays) and frame each written answer as a model answer;
2. execute that notebook with nbclient, with ``source/<lab>/`` as the working directory so the
   notebook finds its ``ref/`` files. The executed notebook is cached under
   ``build/.site-cache/``, keyed on the notebook's content, ``course_lib`` and ``ref/``: a second
   build reuses it and takes seconds;
3. make every output offline (:func:`offline_page`: widget outputs fall back to their text, an
   HTML/SVG/JavaScript output that would load anything from outside the site is replaced by its
   plain-text form);
4. stage the notebooks with ``docs/`` (Sphinx configuration, landing page, static files) and a
   local copy of MathJax 3 (npm's ``mathjax@3``, installed into ``.cache/mathjax/`` by
   ``tools/install_system_deps.sh``) and run Sphinx with MyST-NB and the book theme;
5. scan the built pages (:func:`external_requests`): a page that would still load anything from
   outside the machine stops the build. The site must work in a classroom with no internet.

Why Sphinx + MyST-NB + sphinx-book-theme rather than Jupyter Book 2: it is the same ecosystem
(Jupyter Book 1 *is* this stack) but builds fully offline; Jupyter Book 2 downloads its theme at
build time, and no CDN or theme server is reachable on the course machines.

The student site starts from ``release/<lab>/<lab>.ipynb`` (made by ``nbgrader
generate_assignment``). Where a release notebook is missing it is made from the source notebook
with nbgrader's own ClearSolutions and ClearHiddenTests preprocessors. It is not executed
(outputs could give answers away), and the build refuses to write it if any solution line or
hidden test of the source notebooks survives in it.

Why one module of this size: staging, rewriting notebooks for the two editions, and the
offline checks of the built pages are one build, each step reading what the last wrote.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from tools import layout
from tools.layout import ROOT

DOCS_DIR = ROOT / "docs"
SOURCE_DIR = ROOT / layout.SOURCE
RELEASE_DIR = ROOT / layout.RELEASE
BUILD_DIR = ROOT / "build"
CACHE_DIR = BUILD_DIR / ".site-cache"
MATHJAX_DIR = ROOT / ".cache" / "mathjax" / "node_modules" / "mathjax" / "es5"

#: The labs of the course, in order. Others found in source/ are added after these.
LABS: tuple[str, ...] = tuple(layout.labs())  # discovered from labs/lab*.py

#: Bump to invalidate every cached execution (e.g. when the staging rules change).
CACHE_VERSION = "1"

#: What MathJax loads: the combined component, its fonts, the TeX extensions it loads on demand
#: (e.g. boldsymbol.js: one missing file leaves a whole page untypeset) and the menu's modules.
MATHJAX_PARTS: tuple[str, ...] = ("tex-mml-chtml.js", "output/chtml/fonts/woff-v2",
                                  "input/tex/extensions", "a11y", "ui")

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"
SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"


class SiteError(RuntimeError):
    """The site cannot be built; the message says why and what to do."""


@dataclass(frozen=True)
class Lab:
    """One lab notebook to put on the site."""

    name: str
    notebook: Path  # the notebook the page is made from
    workdir: Path  # working directory when executing it (has ref/)


# --------------------------------------------------------------------------- offline pages

#: Output formats that only a widget manager loaded from a CDN can show.
WIDGET_MIMES: tuple[str, ...] = ("application/vnd.jupyter.widget-view+json",
                                 "application/vnd.jupyter.widget-state+json")
#: Output formats that a browser renders and that can load other resources.
ACTIVE_MIMES: tuple[str, ...] = ("text/html", "image/svg+xml", "application/javascript",
                                 "text/markdown", "application/vnd.plotly.v1+json")
#: A URL that leaves the machine: a scheme-relative or http(s) address not on the loopback.
_REMOTE = r"""(?:https?:)?//(?!(?:127\.\d+\.\d+\.\d+|localhost|\[::1\])[:/"'\s>])[^\s"'<>)]+"""
#: Places in HTML and CSS where a browser fetches a URL by itself (links one clicks are fine).
_FETCHES = re.compile(
    r"""<(?:script|img|iframe|embed|source|video|audio|track|input|frame)\b[^>]*?\s(?:src|srcset|poster)\s*=\s*["']?\s*(""" + _REMOTE + r")"
    r"""|<link\b[^>]*?\shref\s*=\s*["']?\s*(""" + _REMOTE + r")"
    r"""|<object\b[^>]*?\sdata\s*=\s*["']?\s*(""" + _REMOTE + r")"
    r"""|<image\b[^>]*?\s(?:xlink:)?href\s*=\s*["']?\s*(""" + _REMOTE + r")"
    r"""|url\(\s*["']?\s*(""" + _REMOTE + r")"
    r"""|@import\s+["'](""" + _REMOTE + r")"
    r"""|(?:require|import|fetch|importScripts)\s*\(\s*\[?\s*["'](""" + _REMOTE + r")",
    re.IGNORECASE)


def remote_fetches(text: str) -> list[str]:
    """The URLs outside this machine that HTML, CSS or JavaScript ``text`` would load by itself."""
    return [next(g for g in m.groups() if g) for m in _FETCHES.finditer(text)]


def _text(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


def offline_page(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose outputs load nothing from outside the site.

    Widget outputs (a tqdm bar in a notebook front end) keep only their plain-text form, and the
    notebook's saved widget state goes: showing them needs require.js and a widget manager from a
    CDN. A rich output (HTML, SVG, JavaScript, Markdown) that would fetch an outside URL is
    dropped in favour of the output's text form, or a one-line note when it has none.
    """
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            removed = [m for m in WIDGET_MIMES if m in data]
            removed += [m for m in ACTIVE_MIMES if m in data and remote_fetches(_text(data[m]))]
            for mime in removed:
                del data[mime]
            if removed and not data:
                data["text/plain"] = (f"[output not shown on the site: {removed[0]} would load "
                                      "files from outside this site]")
    return nb


def external_requests(site_dir: Path) -> dict[str, list[str]]:
    """Pages (HTML, CSS, JS under ``site_dir``) that would load something from outside the machine."""
    found: dict[str, list[str]] = {}
    for path in sorted(site_dir.rglob("*")):
        if path.suffix not in {".html", ".css", ".js"} or not path.is_file():
            continue
        if "_static/mathjax" in path.as_posix():  # MathJax's own code names its CDN as a default only
            continue
        urls = remote_fetches(path.read_text(errors="replace"))
        if urls:
            found[path.relative_to(site_dir).as_posix()] = sorted(set(urls))
    return found


# --------------------------------------------------------------------------- discovery


def discover_labs(base: Path, expected: tuple[str, ...] = LABS) -> tuple[list[str], list[str]]:
    """Return (labs present in ``base``, expected labs that are missing), in course order.

    A lab is present when ``base/<lab>/<lab>.ipynb`` exists.
    """
    if not isinstance(base, Path):
        raise TypeError(f"base must be a pathlib.Path, got {type(base).__name__}")
    found = sorted(p.parent.name for p in base.glob("lab*/lab*.ipynb") if p.stem == p.parent.name)
    present = [lab for lab in expected if lab in found] + [lab for lab in found if lab not in expected]
    missing = [lab for lab in expected if lab not in found]
    return present, missing


# --------------------------------------------------------------------------- notebook rewriting


def _lines(source: str | list[str]) -> list[str]:
    return ("".join(source) if isinstance(source, list) else source).split("\n")


def remove_hidden_tests(source: str, where: str = "cell") -> str:
    """Remove every ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` block (markers included)."""
    out: list[str] = []
    hidden = False
    for line in _lines(source):
        if HIDDEN_BEGIN in line:
            if hidden:
                raise SiteError(f"{where}: nested '{HIDDEN_BEGIN}'")
            hidden = True
        elif HIDDEN_END in line:
            if not hidden:
                raise SiteError(f"{where}: '{HIDDEN_END}' without '{HIDDEN_BEGIN}'")
            hidden = False
        elif not hidden:
            out.append(line)
    if hidden:
        raise SiteError(f"{where}: '{HIDDEN_BEGIN}' is never closed by '{HIDDEN_END}'")
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


def remove_solution_markers(source: str) -> str:
    """Drop the ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines, keeping the code between."""
    return "\n".join(line for line in _lines(source)
                     if SOLUTION_BEGIN not in line and SOLUTION_END not in line)


def _nbgrader(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def solutions_notebook(nb: nbformat.NotebookNode, lab: str) -> nbformat.NotebookNode:
    """The page version of a source notebook: no hidden tests, no outputs, answers framed."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        where = f"{lab}, cell {i + 1}"
        text = remove_hidden_tests(cell.source, where)
        meta = _nbgrader(cell)
        if cell.cell_type == "code":
            text = remove_solution_markers(text)
            cell.outputs = []
            cell.execution_count = None
        elif meta.get("solution") and meta.get("grade"):
            # a manually graded written answer: the source holds the model answer
            text = remove_solution_markers(text).strip()
            fence = "`" * max(4, _longest_backtick_run(text) + 1)
            text = f"{fence}{{admonition}} Model answer\n:class: tip\n\n{text}\n{fence}"
        cell.source = text
    return nb


def _longest_backtick_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def release_from_source(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Make a student notebook from a source notebook with nbgrader's own preprocessors."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions

    nb = copy.deepcopy(nb)
    resources: dict = {}
    for pre in (ClearSolutions(), ClearHiddenTests(), ClearOutput()):
        nb, resources = pre.preprocess(nb, resources)
    return nb


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The page version of a release notebook: outputs cleared, nothing else changed."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def solution_lines(source_nb: nbformat.NotebookNode) -> set[str]:
    """Distinctive lines of the solutions and hidden tests of a source notebook.

    Used to prove that a student page gives none of them away. Short lines (``return x``),
    comments and lines that also occur outside the solution/hidden blocks are left out.
    """
    secret: set[str] = set()
    public: set[str] = set()
    for cell in source_nb.cells:
        mode = None
        for raw in _lines(cell.source):
            line = raw.strip()
            if SOLUTION_BEGIN in line or HIDDEN_BEGIN in line:
                mode = "secret"
                continue
            if SOLUTION_END in line or HIDDEN_END in line:
                mode = None
                continue
            meta = _nbgrader(cell)
            is_answer = cell.cell_type == "markdown" and meta.get("solution") and meta.get("grade")
            target = secret if (mode or is_answer) else public
            target.add(line)
    return {s for s in secret - public if len(s) >= 25 and not s.startswith("#")}


def check_student_safe(page_nb: nbformat.NotebookNode, source_nb: nbformat.NotebookNode,
                       lab: str) -> None:
    """Raise SiteError if the student page of ``lab`` shows any solution or hidden test."""
    text = "\n".join("\n".join(_lines(c.source)) for c in page_nb.cells)
    for marker in (SOLUTION_BEGIN, HIDDEN_BEGIN):
        if marker in text:
            raise SiteError(f"{lab}: the student notebook still contains '{marker}'")
    page_lines = {line.strip() for line in text.split("\n")}
    leaked = sorted(solution_lines(source_nb) & page_lines)
    if leaked:
        raise SiteError(f"{lab}: the student notebook shows solution/hidden-test lines, e.g. "
                        f"{leaked[0]!r} ({len(leaked)} in all); regenerate release/")


# --------------------------------------------------------------------------- execution cache


def _hash_tree(h: hashlib._Hash, folder: Path, patterns: tuple[str, ...]) -> None:
    if not folder.is_dir():
        return
    for pattern in patterns:
        for path in sorted(folder.rglob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(folder)).encode())
                h.update(path.read_bytes())


def execution_key(nb: nbformat.NotebookNode, workdir: Path, quick: bool = False) -> str:
    """Cache key of an execution: notebook code + course_lib + the lab's ref/ files + mode."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION} py{sys.version_info[:2]} quick={quick}".encode())
    h.update(json.dumps([[c.cell_type, c.source] for c in nb.cells]).encode())
    _hash_tree(h, ROOT / "course_lib", ("*.py", "data/*"))
    _hash_tree(h, workdir / "ref", ("*",))
    return h.hexdigest()[:20]


def cache_path(nb: nbformat.NotebookNode, lab: Lab, quick: bool = False) -> Path:
    """Where the executed version of ``nb`` is (or would be) cached."""
    mode = ".quick" if quick else ""
    return CACHE_DIR / f"{lab.name}{mode}.{execution_key(nb, lab.workdir, quick)}.ipynb"


def execute(nb: nbformat.NotebookNode, lab: Lab, rerun: bool = False, quick: bool = False,
            timeout: int = 900) -> tuple[nbformat.NotebookNode, bool]:
    """Execute ``nb`` in ``lab.workdir`` (or reuse a cached run). Returns (notebook, from_cache).

    ``quick`` runs the kernel with ``NBGRADER_EXECUTION=validate``: the labs then shrink their
    ungraded benchmarks as they do while graded (course_lib.timing.is_autograding).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached = cache_path(nb, lab, quick)
    if cached.exists() and not rerun:
        return nbformat.read(cached, as_version=4), True
    nb = copy.deepcopy(nb)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(lab.workdir)}})
    kernel_log = CACHE_DIR / f"{lab.name}.kernel.log"
    try:
        # The kernel's own stderr (ipykernel start-up notices) goes to a log, not the console.
        with kernel_log.open("wb") as log:
            extra: dict = {"env": dict(os.environ, NBGRADER_EXECUTION="validate")} if quick else {}
            client.execute(stderr=log, **extra)
    except CellExecutionError as err:
        raise SiteError(f"{lab.name}: a cell failed while executing the solutions notebook "
                        f"(cwd {lab.workdir.relative_to(ROOT)}):\n{err}") from err
    for old in CACHE_DIR.glob(f"{lab.name}{'.quick' if quick else ''}.*.ipynb"):
        if old.name.count(".") == cached.name.count("."):
            old.unlink()
    tmp = cached.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    tmp.replace(cached)
    return nb, False


# --------------------------------------------------------------------------- staging


def _write_if_changed(path: Path, data: bytes) -> None:
    # Sphinx rebuilds a page when its file's mtime changes: only touch what really changed.
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _sync_tree(src: Path, dst: Path, skip: tuple[Path, ...] = ()) -> set[Path]:
    written = set()
    for path in sorted(src.rglob("*")):
        if path in skip:
            continue
        if path.is_file() and not {"__pycache__", "screenshots", "benchmarks"} & set(path.parts):
            target = dst / path.relative_to(src)
            _write_if_changed(target, path.read_bytes())
            written.add(target)
    return written


def ensure_mathjax() -> Path:
    """Return the MathJax es5 folder, installing it with tools/install_system_deps.sh if needed."""
    if not (MATHJAX_DIR / "tex-mml-chtml.js").exists():
        print("site: MathJax not found in .cache/mathjax; running tools/install_system_deps.sh "
              "--mathjax-only")
        subprocess.run(["bash", str(ROOT / "tools" / "install_system_deps.sh"), "--mathjax-only"],
                       check=True)
    if not (MATHJAX_DIR / "tex-mml-chtml.js").exists():
        raise SiteError("MathJax 3 is missing: run `bash tools/install_system_deps.sh`")
    return MATHJAX_DIR


def title_and_summary(nb: nbformat.NotebookNode) -> tuple[str, str]:
    """The first Markdown heading of a notebook, and the first paragraph after it (if short)."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        paragraphs = re.split(r"\n\s*\n", cell.source.strip())
        heading = next((p for p in paragraphs if p.startswith("# ")), None)
        if heading is None:
            continue
        title = heading.split("\n")[0][2:].strip()
        rest = paragraphs[paragraphs.index(heading) + 1:]
        summary = next((p for p in rest if p and p[0].isalnum()), "")
        if len(summary) > 400 or "\n" in summary.strip() and summary.lstrip().startswith(("-", "*")):
            summary = ""
        return title, " ".join(summary.split())
    return "", ""


#: Markdown files of docs/ that are not pages of the site: the landing page's template, and notes
#: for the course's maintainers.
NOT_ON_SITE = ("index.md", "README.md", "architecture.md")


def note_pages(docs: Path = DOCS_DIR) -> list[Path]:
    """Extra Markdown pages in docs/ (e.g. calibration reports): instructor notes.

    They go on the solutions site (sidebar section "Notes"), never on the student site.
    """
    return sorted(p for p in docs.glob("*.md") if p.name not in NOT_ON_SITE)


def landing_page(template: str, pages: list[tuple[str, nbformat.NotebookNode]],
                 missing: list[str], student: bool, quick: bool = False,
                 notes: tuple[str, ...] = ()) -> str:
    """Fill docs/index.md's {{LABS}} and {{EDITION}} placeholders."""
    items = []
    for name, nb in pages:
        _, summary = title_and_summary(nb)
        items.append(f"- {{doc}}`{name}`" + (f": {summary}" if summary else ""))
    for name in missing:
        items.append(f"- *{name}: not available in this build yet.*")
    toctree = ("```{toctree}\n:hidden:\n:maxdepth: 2\n:caption: Labs\n\n"
               + "\n".join(n for n, _ in pages) + "\n```")
    if notes:
        items.append("\nNotes for instructors: " + ", ".join(f"{{doc}}`{n}`" for n in notes) + ".")
        toctree += ("\n\n```{toctree}\n:hidden:\n:maxdepth: 1\n:caption: Notes\n\n"
                    + "\n".join(notes) + "\n```")
    if student:
        edition = ("This is the **student edition**: the tasks and visible tests of each lab, "
                   "without solutions and without outputs. Work in JupyterLab with the release "
                   "notebooks; nbgrader's *Validate* button runs the visible tests.")
    else:
        edition = ("This is the **solutions edition** for self-learners: every notebook is shown "
                   "executed, with the reference solutions, the visible tests and their outputs "
                   "and plots (the hidden grading tests are left out). Try each task yourself "
                   "first.")
        if quick:
            edition += (" *This build ran the ungraded benchmarks at their small grading sizes "
                        "(`--quick`).*")
    return (template.replace("{{LABS}}", "\n".join(items) + "\n\n" + toctree)
            .replace("{{EDITION}}", edition))


# --------------------------------------------------------------------------- build


def solutions_labs() -> list[tuple[Lab, nbformat.NotebookNode]]:
    """Every lab in source/ with the notebook its solutions page is made from (not executed)."""
    labs = []
    for name in discover_labs(SOURCE_DIR)[0]:
        source_nb = nbformat.read(SOURCE_DIR / name / f"{name}.ipynb", as_version=4)
        lab = Lab(name, SOURCE_DIR / name / f"{name}.ipynb", SOURCE_DIR / name)
        labs.append((lab, solutions_notebook(source_nb, name)))
    return labs


def full_execution_cached() -> bool:
    """True when every lab's full-size execution is in the cache (a build would run nothing)."""
    return all(cache_path(nb, lab).exists() for lab, nb in solutions_labs())


def stage_dir(student: bool = False) -> Path:
    """The folder Sphinx builds from (docs/ + the staged notebooks <lab>.ipynb + MathJax)."""
    return BUILD_DIR / ".site-stage" / ("site-student" if student else "site")


def build(student: bool = False, strict: bool = False, rerun: bool = False, quick: bool = False,
          out: Path | None = None, quiet: bool = False) -> Path:
    """Build the site; return the path of its index.html.

    ``quick`` executes the notebooks with their benchmarks shrunk (see :func:`execute`); the
    tests use it when no full-size execution is cached.
    """
    t0 = time.perf_counter()
    variant = "site-student" if student else "site"
    out = out or BUILD_DIR / variant
    stage = stage_dir(student)
    doctrees = BUILD_DIR / ".site-doctrees" / variant

    def say(msg: str) -> None:
        if not quiet:
            print(f"site: {msg}", flush=True)

    present, missing = discover_labs(SOURCE_DIR)
    for name in missing:
        say(f"{name}: source/{name}/{name}.ipynb not found; skipped")
    if not present:
        raise SiteError("no lab notebooks in source/: run `python -m tools.nbbuild` first")

    pages: list[tuple[str, nbformat.NotebookNode]] = []
    for name in present:
        source_nb = nbformat.read(SOURCE_DIR / name / f"{name}.ipynb", as_version=4)
        if student:
            release_path = RELEASE_DIR / name / f"{name}.ipynb"
            if release_path.exists():
                page = student_notebook(nbformat.read(release_path, as_version=4))
                fresh = release_from_source(source_nb)
                if [c.source for c in page.cells] != [c.source for c in fresh.cells]:
                    say(f"{name}: release/{name} differs from what source/{name} gives now "
                        "(run the release step again); using release/ as it is")
            else:
                say(f"{name}: no release/{name}/{name}.ipynb; made the student page from the "
                    "source notebook with nbgrader's ClearSolutions/ClearHiddenTests")
                page = release_from_source(source_nb)
            check_student_safe(page, source_nb, name)
        else:
            lab = Lab(name, SOURCE_DIR / name / f"{name}.ipynb", SOURCE_DIR / name)
            t = time.perf_counter()
            page, cached = execute(solutions_notebook(source_nb, name), lab, rerun=rerun,
                                   quick=quick)
            say(f"{name}: " + ("reused cached execution" if cached
                               else f"executed in {time.perf_counter() - t:.1f} s"))
        pages.append((name, offline_page(page)))

    # Stage: docs/ + notebooks + MathJax, rewriting only files whose content changed.
    notes = [] if student else note_pages()
    keep = _sync_tree(DOCS_DIR, stage, skip=tuple(set(note_pages()) - set(notes)))
    index = stage / "index.md"
    _write_if_changed(index, landing_page((DOCS_DIR / "index.md").read_text(), pages, missing,
                                          student, quick, tuple(p.stem for p in notes)).encode())
    for name, page in pages:
        target = stage / f"{name}.ipynb"
        _write_if_changed(target, (nbformat.writes(page) + "\n").encode())
        keep.add(target)
    mathjax = ensure_mathjax()
    for part in MATHJAX_PARTS:
        src = mathjax / part
        dst = stage / "_static" / "mathjax" / part
        if src.is_dir():
            keep |= _sync_tree(src, dst)
        else:
            _write_if_changed(dst, src.read_bytes())
            keep.add(dst)
    for path in sorted(stage.rglob("*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()

    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-d", str(doctrees),
           str(stage), str(out)]
    if student:
        cmd[3:3] = ["-t", "student"]
    if strict:
        cmd[3:3] = ["-W", "--keep-going"]
    t = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    for line in warnings:
        print(line, file=sys.stderr)
    if result.returncode != 0:
        raise SiteError(f"sphinx-build failed (exit {result.returncode}); see the messages above")
    say(f"sphinx: {time.perf_counter() - t:.1f} s, {len(warnings)} warning line(s)")
    outside = external_requests(out)
    if outside:
        listing = "; ".join(f"{page}: {', '.join(urls[:3])}" for page, urls in outside.items())
        raise SiteError(f"pages would load files from outside the machine (no internet in many "
                        f"classrooms): {listing}")
    index_html = out / "index.html"
    say(f"wrote {index_html.relative_to(ROOT) if index_html.is_relative_to(ROOT) else index_html}"
        f" ({len(pages)} lab(s)) in {time.perf_counter() - t0:.1f} s")
    return index_html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", action="store_true",
                        help="build the student-safe site (no solutions) into build/site-student/")
    parser.add_argument("--strict", action="store_true", help="treat Sphinx warnings as errors")
    parser.add_argument("--rerun", action="store_true", help="ignore the execution cache")
    parser.add_argument("--quick", action="store_true",
                        help="run the labs' ungraded benchmarks at their small grading sizes")
    args = parser.parse_args(argv)
    try:
        build(student=args.student, strict=args.strict, rerun=args.rerun, quick=args.quick)
    except SiteError as err:
        print(f"site: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
