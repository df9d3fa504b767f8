"""tools/similarity.py: the similarity check across submissions.

Fast: submissions are written from the release notebooks into a scratch course folder and
compared; nothing is autograded (the slow test at the end grades the demo's pair once).
"""

from __future__ import annotations

import ast
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import layout
from tools import similarity as sim
from tools.layout import ROOT

LAB = "lab00_cache_sizing"

# An answer written in a style of its own (not a variant of tools/variants), for Lab 00 ...
ORIGINAL = {
    "kv_bytes_per_token": '''def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    """Bytes of K and V that one token adds to the cache of one sequence (all layers)."""
    dims = [n_layers, n_kv_heads, head_dim, bytes_per_elem]
    negatives = [d for d in dims if d < 0]
    if negatives:
        raise ValueError("negative dimension: " + str(negatives))
    per_layer = 2 * n_kv_heads * head_dim
    return int(per_layer * n_layers * bytes_per_elem)
''',
    "max_context_len": '''def max_context_len(mem_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, batch_size, bytes_per_elem):
    """Largest sequence length whose KV cache for batch_size sequences fits beside the weights."""
    leftover = mem_bytes - weight_bytes
    if leftover <= 0:
        return 0
    one_token_all_seqs = kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem) * batch_size
    tokens = leftover // one_token_all_seqs
    return int(tokens)
''',
    "preallocation_waste": '''def preallocation_waste(max_seq_len, actual_lens):
    """Fraction of a cache pre-allocated at max_seq_len per sequence that is never used."""
    if not len(actual_lens):
        raise ValueError("empty batch")
    used_total = 0
    for length in actual_lens:
        if length < 0 or length > max_seq_len:
            raise ValueError("length out of range: " + str(length))
        used_total += length
    reserved_total = max_seq_len * len(actual_lens)
    return 1 - used_total / reserved_total
''',
}

# ... and a copy of it: variables renamed, independent lines reordered, comments added
COPY = {
    "kv_bytes_per_token": '''def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):
    """Bytes of K and V that one token adds to the cache of one sequence (all layers)."""
    # check the inputs first
    sizes = [n_layers, n_kv_heads, head_dim, bytes_per_elem]
    bad = [s for s in sizes if s < 0]
    if bad:
        raise ValueError("negative dimension: " + str(bad))
    layer_elems = 2 * n_kv_heads * head_dim  # K and V
    return int(layer_elems * n_layers * bytes_per_elem)
''',
    "max_context_len": '''def max_context_len(mem_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, batch_size, bytes_per_elem):
    """Largest sequence length whose KV cache for batch_size sequences fits beside the weights."""
    free = mem_bytes - weight_bytes
    if free <= 0:
        return 0
    per_tok = kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem) * batch_size
    n = free // per_tok
    return int(n)
''',
    "preallocation_waste": '''def preallocation_waste(max_seq_len, actual_lens):
    """Fraction of a cache pre-allocated at max_seq_len per sequence that is never used."""
    if not len(actual_lens):
        raise ValueError("empty batch")
    reserved = max_seq_len * len(actual_lens)
    used = 0
    for L in actual_lens:
        if L < 0 or L > max_seq_len:
            raise ValueError("length out of range: " + str(L))
        used += L
    return 1 - used / reserved
''',
}


@pytest.fixture()
def course(tmp_path) -> Path:
    """A scratch course folder with every lab's source and release notebook, no submissions."""
    for lab in layout.available_labs():
        for path in (layout.source_notebook(lab), layout.release_notebook(lab)):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    return tmp_path


def submit(root: Path, student: str, cells: dict[str, str], lab: str = LAB) -> Path:
    """A submission: the release notebook with these answer cells filled in."""
    return sim.write_answer(root, lab, student, cells)


def solution(root: Path, lab: str = LAB) -> dict[str, str]:
    return dict(sim.boilerplate(lab, root).solution)


def pairs_of(check: sim.LabCheck) -> set[frozenset[str]]:
    return {frozenset((p.student_a, p.student_b)) for p in check.pairs}


# ----------------------------------------------------------------------------- what is flagged


def test_a_renamed_and_reordered_copy_is_flagged(course):
    submit(course, "ada", {**solution(course), **ORIGINAL})
    submit(course, "bob", {**solution(course), **COPY})
    check = sim.check(LAB, course)
    assert pairs_of(check) == {frozenset({"ada", "bob"})}
    pair = check.pairs[0]
    assert pair.similarity >= sim.THRESHOLD and pair.overlap >= sim.MIN_OVERLAP
    assert set(pair.cells_a) == set(ORIGINAL)  # the solution's cells are not compared


@pytest.mark.parametrize("lab", layout.available_labs())
def test_the_demo_pair_is_flagged_in_every_lab(course, lab):
    """The longest correct variant and its disguised copy (renamed, reordered, reformatted)."""
    original = sim.demo_answer(lab, course)
    if original is None:
        pytest.skip(f"{lab} has no correct variants")
    submit(course, "original", original, lab)
    submit(course, "copy", {**original, **sim.disguised_cells(original, sim.boilerplate(lab, course))}, lab)
    assert pairs_of(sim.check(lab, course)) == {frozenset({"original", "copy"})}


@pytest.mark.parametrize("lab", layout.available_labs())
def test_different_correct_variants_are_not_flagged(course, lab):
    """Correct answers written independently, in different styles (tools/variants CORRECT)."""
    from tools.samples import submission_cells

    module = layout.variants(lab)
    names = sorted(getattr(module, "CORRECT", {}))
    if len(names) < 2:
        pytest.skip(f"{lab} has fewer than two correct variants")
    common = sim.boilerplate(lab, course)
    answers = [sim.to_answer(name, lab, submission_cells(ROOT, lab, f"correct:{name}"), common) for name in names]
    every = sim.compare([a for a in answers if a], common.texts, threshold=0.0, min_overlap=0)
    assert len(every) <= len(list(itertools.combinations(names, 2)))
    worst = max(every, key=lambda p: p.similarity, default=None)
    assert worst is None or worst.similarity < sim.THRESHOLD, (worst.student_a, worst.student_b, worst.similarity)


def test_one_line_answers_alike_for_everyone_do_not_flag(course):
    """Every cell a short formula or placeholder, identical in both notebooks."""
    stub = sim.boilerplate(LAB, course).stub
    short = {gid: code.split("\n")[0] + "\n    return 1\n" for gid, code in stub.items()}
    short["kv_bytes_per_token"] = ("def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):\n"
                                   "    return 2 * n_layers * n_kv_heads * head_dim * bytes_per_elem\n")
    submit(course, "ada", short)
    submit(course, "bob", short)
    check = sim.check(LAB, course)
    assert check.compared == ["ada", "bob"] and check.pairs == []


def test_stub_and_solution_do_not_count(course):
    common = sim.boilerplate(LAB, course)
    commented = {gid: "# my answer\n" + code.replace("\n", "\n\n") + "\n# done\n" for gid, code in common.solution.items()}
    submit(course, "untouched", {})
    submit(course, "solution", common.solution)
    submit(course, "solution-commented", commented)
    submit(course, "stub-lines-left", {gid: code + "\n# YOUR CODE HERE\nraise NotImplementedError()\n"
                                       for gid, code in common.solution.items()})
    # the same solution with one cell of their own each: 8 of 9 cells alike, still not a pair
    submit(course, "ada", {**common.solution, "kv_bytes_per_token": ORIGINAL["kv_bytes_per_token"]})
    submit(course, "bob", {**common.solution, "preallocation_waste": ORIGINAL["preallocation_waste"]})
    check = sim.check(LAB, course)
    assert check.compared == ["ada", "bob"] and check.pairs == []
    reasons = {s.student: s.reason for s in check.skipped}
    assert set(reasons) == {"untouched", "solution", "solution-commented", "stub-lines-left"}
    assert all(r.startswith("no answer code of its own") for r in reasons.values())


def test_code_shared_with_the_stub_counts_for_no_one(course):
    """The release's signature and docstring lines are marked as given and never compared."""
    answer = sim.to_answer("ada", LAB, ORIGINAL, sim.boilerplate(LAB, course))
    assert answer.cells["kv_bytes_per_token"].startswith("# given: def kv_bytes_per_token(")
    assert "    # given: \"\"\"Bytes of K and V" in answer.cells["kv_bytes_per_token"]
    stub = 'def f(a):\n    """\n    Given.\n    """\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
    code = 'def f(a):\n    """\n    Given.\n    """\n    def g():\n        """\n        My own.\n        """\n'
    assert sim._given_marked(code, stub).splitlines() == [
        "# given: def f(a):", '    # given: """', "    # given: Given.", '    # given: """',
        "    def g():", '        """', "        My own.", '        """']  # a lone quote of one's own stays


def test_written_answers_are_not_compared(course):
    """Markdown answer cells (solution: true) are left out: only code cells are compared."""
    nb = nbformat.read(layout.release_notebook(LAB, course), as_version=4)
    written = [c for c in nb.cells if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution")]
    assert written, "Lab 00 has written answers"
    for cell in written:
        cell.source = "The same long paragraph, word for word, in both notebooks. " * 30
    for student in ("ada", "bob"):
        path = layout.submitted_notebook(student, LAB, course)
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    check = sim.check(LAB, course)
    assert check.pairs == [] and {s.student for s in check.skipped} == {"ada", "bob"}


# ----------------------------------------------------------------------------- broken input


def test_broken_and_empty_submissions_are_skipped_with_a_reason(course):
    submit(course, "ada", {**solution(course), **ORIGINAL})
    submit(course, "bob", {**solution(course), **COPY})
    folder = layout.submission_dir("broken-json", LAB, course)
    folder.mkdir(parents=True)
    (folder / f"{LAB}.ipynb").write_text('{"cells": [ {"cell_type": "code", "source": "x = 1"')
    folder = layout.submission_dir("empty-file", LAB, course)
    folder.mkdir(parents=True)
    (folder / f"{LAB}.ipynb").write_text("")
    folder = layout.submission_dir("not-a-notebook", LAB, course)
    folder.mkdir(parents=True)
    (folder / f"{LAB}.ipynb").write_text(json.dumps([1, 2, 3]))
    folder = layout.submission_dir("latin-1", LAB, course)
    folder.mkdir(parents=True)
    (folder / f"{LAB}.ipynb").write_bytes(b'{"cells": "caf\xe9"}')
    folder = layout.submission_dir("wrong-file", LAB, course)
    folder.mkdir(parents=True)
    (folder / "answers.py").write_text("print('hi')\n")
    check = sim.check(LAB, course)
    assert pairs_of(check) == {frozenset({"ada", "bob"})}
    reasons = {s.student: s.reason for s in check.skipped}
    assert reasons["wrong-file"] == f"no notebook named {LAB}.ipynb in the submission"
    for student in ("broken-json", "empty-file", "not-a-notebook", "latin-1"):
        assert reasons[student].startswith("unreadable notebook ("), (student, reasons[student])
    assert "NotJSONError" in reasons["broken-json"]
    table = sim.format_table([check])
    assert "skipped, unreadable notebook" in table and "broken-json" in table


def test_a_course_without_submissions(course):
    assert sim.check_course(course) == []
    assert "No submissions to compare" in sim.html_section([])


# ----------------------------------------------------------------------------- HTML


def test_html_escapes_student_code_and_names(course):
    evil = {gid: code.replace('raise ValueError("empty batch")',
                              'raise ValueError("</pre><script>alert(1)</script> & <b>")')
            for gid, code in ORIGINAL.items()}
    copied = {gid: code.replace('raise ValueError("empty batch")',
                                'raise ValueError("</pre><script>alert(1)</script> & <b>")')
              for gid, code in COPY.items()}
    submit(course, "<img src=x onerror=alert(2)>", evil)
    submit(course, "bob", copied)
    check = sim.check(LAB, course)
    assert len(check.pairs) == 1
    page = sim.html_section([check])
    assert "<script>" not in page and "<img" not in page and "<b>\")" not in page
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert page.count("<pre>") == page.count("</pre>") == 2
    assert "<mark>" in page  # the shared code is highlighted


def test_highlight_marks_the_shared_runs_only():
    code = "# answer cell a\nx = 1 < 2\n# given: def f():\ny = 3\n"
    out = sim.highlight(code, [(0, len(code))])
    assert out.count("<mark>") == 2 and "&lt;" in out
    assert "<mark># given" not in out and "<mark># answer cell" not in out
    assert sim.highlight("a & b", []) == "a &amp; b"


def test_the_course_report_has_the_similarity_section(course):
    """tools.grades.write_class_report puts the section into report.html; it changes no file."""
    from tools.grades import write_class_report

    submit(course, "ada", {**solution(course), **ORIGINAL})
    submit(course, "bob", {**solution(course), **COPY})
    before = {p: p.read_bytes() for p in course.rglob("*") if p.is_file()}
    page = write_class_report(course, []).read_text()
    assert "<h2 id='similarity'>Similarity</h2>" in page and "ada" in page and "bob" in page
    after = {p: p.read_bytes() for p in course.rglob("*") if p.is_file() and p.name != "report.html"}
    assert after == before


def test_the_synthetic_class_section(course):
    """Identical answers of a synthetic class are counted as expected; the demo pair is shown."""
    from tools.samples import write_submission

    module = layout.variants(LAB)
    correct = sorted(module.CORRECT)[:2]
    mutant = module.MUTANTS[0]["name"]
    roster = {"s1": f"correct:{correct[0]}", "s2": f"correct:{correct[0]}", "s3": f"correct:{correct[1]}",
              "s4": f"mutant:{mutant}", "s5": f"mutant:{mutant}", "s6": "solution", "s7": "untouched"}
    for student, variant in roster.items():
        write_submission(course, LAB, student, variant)
    broken = layout.submission_dir("s8", LAB, course)
    broken.mkdir(parents=True)
    (broken / f"{LAB}.ipynb").write_text("{")
    roster["s8"] = "broken:json"
    page = sim.classroom_section(course, {(s, LAB): v for s, v in roster.items()})
    assert "identical answers are expected" in page
    assert "Demo pair" in page and "renamed copy (demo)" in page
    # s1/s2 (same correct variant): counted as the same variant; no false alarm
    row = page.split(f"<tr><td>{LAB}</td>")[1].split("</tr>")[0]
    cells = [c.split("<")[0] for c in row.split("<td>")[1:]]
    compared, skipped, listed, same, mistake, other = (int(c) for c in cells)
    assert (compared, skipped, other) == (5, 3, 0) and same >= 1 and listed == same + mistake


def test_classroom_report_hook(course, tmp_path):
    """tools.classroom.write_html adds the section to the synthetic class's report."""
    from tools import classroom
    from tools.samples import write_submission

    name = sorted(layout.variants(LAB).CORRECT)[0]
    rows = []
    for student in ("s1", "s2"):
        write_submission(course, LAB, student, f"correct:{name}")
        rows.append(classroom.Result(student, LAB, f"correct:{name}", "graded", 24.0, 24.0, 24.0, "graded"))
    path = tmp_path / "report.html"
    classroom.write_html(course, rows, path)
    page = path.read_text()
    assert "<h2 id='similarity'>Similarity</h2>" in page and "identical answers are expected" in page


# ----------------------------------------------------------------------------- the demo's pair


def test_write_demo_pair(course):
    from tools.samples import write_submission

    for student in ("solution", "untouched", "mistakes"):
        write_submission(course, LAB, student, student)
    written = sim.write_demo_pair(course)
    assert [p.parent.parent.name for p in written] == list(sim.DEMO_STUDENTS)
    assert pairs_of(sim.check(LAB, course)) == {frozenset(sim.DEMO_STUDENTS)}
    assert sim.write_demo_pair(course) == written  # rewritten, as the other samples are
    copied = nbformat.read(written[1], as_version=4)
    for cell in copied.cells:
        if cell.metadata.get("nbgrader", {}).get("solution") and cell.cell_type == "code":
            ast.parse(cell.source)


def test_no_demo_pair_when_the_submissions_have_one(course):
    submit(course, "ada", {**solution(course), **ORIGINAL})
    submit(course, "bob", {**solution(course), **COPY})
    assert sim.write_demo_pair(course) == []
    assert sim.students(LAB, course) == ["ada", "bob"]


def test_disguised_code_behaves_the_same():
    code = '''
import math
from fractions import Fraction
SCALE = 3
def f(n, *rest, key=None, **options):
    """Docstring."""
    global SCALE
    total = 0
    step = 2  # independent of total: may move
    for i in range(n):
        total += i * step
    squares = [i * i for i in range(n)]
    inner = lambda x, base=total: x + base
    SCALE = SCALE + 1
    return total, squares, inner(1), sorted(rest), key, dict(options), math.floor(Fraction(7, 2))
'''
    copied = sim.disguised(code)
    assert "my_total" in copied and "my_step" in copied and "my_i " in copied
    assert "SCALE" in copied and "my_SCALE" not in copied and "my_base" not in copied  # globals, parameters kept
    assert "def f(n, *rest, key=None, **options)" in copied
    one, two = {}, {}
    exec(code, one)  # noqa: S102 - the test's own code
    exec(copied, two)  # noqa: S102
    assert one["f"](5, 3, 1, key="k", flag=True) == two["f"](5, 3, 1, key="k", flag=True)
    with pytest.raises(SyntaxError):
        sim.disguised("def broken(:\n")


# ----------------------------------------------------------------------------- command line


def test_cli_exit_codes(course, capsys):
    assert sim.main(["--root", str(course)]) == 0
    assert "no submissions to compare" in capsys.readouterr().out
    submit(course, "ada", {**solution(course), **ORIGINAL})
    submit(course, "bob", {**solution(course), **COPY})
    assert sim.main(["--root", str(course), "--lab", LAB]) == 0
    out = capsys.readouterr().out
    assert "ada" in out and "bob" in out and "1 pairs listed" in out
    assert sim.main(["--root", str(course), "--threshold", "1"]) == 0  # nothing reaches 1.0 here
    assert "0 pairs listed" in capsys.readouterr().out
    for bad in (["--lab", "lab99_nothing"], ["--threshold", "1.5"], ["--threshold", "x"], ["--min-overlap", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            sim.main(["--root", str(course), *bad])
        assert exit_info.value.code == 2, bad


def test_cli_as_a_module(course):
    """``python -m tools.similarity`` (what ``make similarity`` runs): the table, exit status 0."""
    submit(course, "ada", {**solution(course), **ORIGINAL})
    submit(course, "bob", {**solution(course), **COPY})
    result = subprocess.run([sys.executable, "-m", "tools.similarity", "--root", str(course)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ada" in result.stdout and "lab00_cache_sizing: 2 submissions compared, 1 pairs listed" in result.stdout


# ----------------------------------------------------------------------------- grades untouched


@pytest.mark.slow
def test_the_demo_pair_is_graded_like_anyone_else(tmp_path):
    """Both students of the demo's pair get full marks: the copy behaves as the original, and a
    listed pair changes no grade."""
    from tools import pipeline
    from tools.grades import collect_grades

    shutil.copytree(ROOT / "source", tmp_path / "source")
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    pipeline.release(tmp_path)
    written = sim.write_demo_pair(tmp_path)
    assert len(written) == 2
    runs = pipeline.autograde(tmp_path, verbose=False)
    rows = {r.student: r for r in collect_grades(tmp_path, runs)}
    assert pairs_of(sim.check(LAB, tmp_path)) == {frozenset(sim.DEMO_STUDENTS)}
    for student in sim.DEMO_STUDENTS:
        assert rows[student].auto_score == rows[student].auto_max > 0, (student, rows[student].failed_tests)
