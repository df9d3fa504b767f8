"""Mutation testing of the hidden tests, with the real ``nbgrader autograde``.

For each lab, every correct variant (tools/variants/<lab>.py: CORRECT) must get full marks, and
every mutant (MUTANTS: one realistic mistake each) must lose points in the test meant to catch
it, with feedback that names the mistake. Submissions are built from the release notebook
exactly as a student would hand them in, graded in a scratch copy of the course, and the
result is printed as a matrix.

    python -m tools.mutation              # a quick subset (what `make test` runs)
    python -m tools.mutation --all        # every variant of every lab
    python -m tools.mutation --lab lab00_cache_sizing --all
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tools import layout
from tools.grades import test_scores
from tools.layout import ROOT, available_labs
from tools.layout import variants as load_variants
from tools.pipeline import autograde, cell_errors, release
from tools.submissions import write_submission


@dataclass
class VariantResult:
    """How one variant fared: points per test cell, and the error text of failed tests."""

    lab: str
    variant: str  # "correct:<name>" or "mutant:<name>"
    graded: bool
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)  # grade_id -> (score, max)
    errors: dict[str, str] = field(default_factory=dict)
    expected_fail: list[str] = field(default_factory=list)
    expected_message: str = ""
    error: str = ""

    @property
    def kind(self) -> str:
        return self.variant.split(":", 1)[0]

    @property
    def total(self) -> tuple[float, float]:
        return (sum(s for s, _ in self.scores.values()), sum(m for _, m in self.scores.values()))

    def problems(self) -> list[str]:
        """Why this variant's outcome is wrong (empty when it is as intended)."""
        if not self.graded:
            return [f"not graded: {self.error}"]
        if self.kind == "correct":
            return [f"{test} lost points ({s:g}/{m:g}): {self.errors.get(test, '')[:300]}"
                    for test, (s, m) in self.scores.items() if s < m]
        out = []
        for test in self.expected_fail:
            if test not in self.scores:
                out.append(f"no test cell {test!r} in the notebook")
                continue
            score, maximum = self.scores[test]
            if score >= maximum:
                out.append(f"{test} did not catch it (full {maximum:g} points)")
            elif self.expected_message.lower() not in self.errors.get(test, "").lower():
                out.append(f"{test} caught it but the feedback does not say {self.expected_message!r}: "
                           f"{self.errors.get(test, '')[:300]!r}")
        return out


def _scratch_course(root: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="kvcourse-mutation-"))
    shutil.copytree(root / layout.SOURCE, tmp / layout.SOURCE)
    shutil.copy(root / "nbgrader_config.py", tmp / "nbgrader_config.py")
    return tmp


def _student_name(variant: str) -> str:
    kind, _, name = variant.partition(":")
    return f"{'ok' if kind == 'correct' else 'mut'}-{name}".replace("_", "-")


def plan(labs: list[str], everything: bool, quick_mutants: int = 4) -> dict[str, list[str]]:
    """Variants to grade per lab: all of them, or every correct one plus a few mutants."""
    out = {}
    for lab in labs:
        module = load_variants(lab)
        if module is None:
            continue
        correct = [f"correct:{name}" for name in module.CORRECT]
        mutants = [f"mutant:{m['name']}" for m in module.MUTANTS]
        if not everything:
            step = max(1, len(mutants) // quick_mutants)
            mutants = mutants[::step][:quick_mutants]
        out[lab] = correct + mutants
    return out


def run(labs: list[str] | None = None, everything: bool = False, root: Path = ROOT,
        keep: bool = False, verbose: bool = True) -> list[VariantResult]:
    """Grade the planned variants in a scratch course and return their results."""
    from nbgrader.api import Gradebook, MissingEntry

    labs = labs or available_labs(root)
    todo = plan(labs, everything)
    course = _scratch_course(root)
    try:
        release(course)
        pairs = []
        for lab, variants in todo.items():
            for variant in variants:
                student = _student_name(variant)
                write_submission(course, lab, student, variant)
                pairs.append((student, lab))
        runs = {(r.student, r.lab): r for r in autograde(course, pairs, verbose=verbose)}
        results = []
        with Gradebook("sqlite:///" + str(course / "gradebook.db")) as gb:
            for lab, variants in todo.items():
                module = load_variants(lab)
                by_name = {m["name"]: m for m in module.MUTANTS}
                for variant in variants:
                    student = _student_name(variant)
                    r = runs[(student, lab)]
                    res = VariantResult(lab, variant, r.success, error=r.error)
                    if variant.startswith("mutant:"):
                        mutant = by_name[variant.split(":", 1)[1]]
                        res.expected_fail = list(mutant["fails"])
                        res.expected_message = mutant["message"]
                    if r.success:
                        try:
                            nb = gb.find_submission_notebook(lab, lab, student)
                        except MissingEntry:
                            res.graded, res.error = False, "no gradebook entry"
                        else:
                            res.scores = test_scores(nb)
                        res.errors = cell_errors(layout.autograded_notebook(student, lab, course))
                    results.append(res)
        return results
    finally:
        if keep:
            print(f"scratch course kept at {course}")
        else:
            shutil.rmtree(course, ignore_errors=True)


def format_matrix(results: list[VariantResult]) -> str:
    """One block per lab: a row per variant, a column per test cell.

    ``+`` full points, ``x`` lost points where intended (a mutant caught by its test),
    ``-`` lost points elsewhere (a knock-on effect), ``!`` a problem.
    """
    lines = []
    for lab in dict.fromkeys(r.lab for r in results):
        rows = [r for r in results if r.lab == lab]
        tests = list(dict.fromkeys(t for r in rows for t in r.scores))
        lines.append(f"\n{lab}")
        for i, t in enumerate(tests):
            lines.append(f"  [{i}] {t}")
        header = f"  {'variant':<34}" + "".join(f"{i:>4}" for i in range(len(tests))) + "   verdict"
        lines.append(header)
        for r in rows:
            cells = []
            for t in tests:
                s, m = r.scores.get(t, (0.0, 0.0))
                if not r.graded:
                    mark = "?"
                elif s >= m:
                    mark = "!" if (r.kind == "mutant" and t in r.expected_fail) else "+"
                elif r.kind == "correct":
                    mark = "!"
                else:
                    mark = "x" if t in r.expected_fail else "-"
                cells.append(f"{mark:>4}")
            problems = r.problems()
            verdict = "OK" if not problems else "PROBLEM: " + problems[0]
            got, maximum = r.total
            lines.append(f"  {r.variant:<34}" + "".join(cells) + f"   {got:g}/{maximum:g} {verdict}")
    n_correct = sum(r.kind == "correct" for r in results)
    n_mut = sum(r.kind == "mutant" for r in results)
    ok_correct = sum(r.kind == "correct" and not r.problems() for r in results)
    ok_mut = sum(r.kind == "mutant" and not r.problems() for r in results)
    lines.append(f"\ncorrect variants at full marks: {ok_correct}/{n_correct}; "
                 f"mutants caught with the intended message: {ok_mut}/{n_mut}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="every variant (default: a quick subset)")
    parser.add_argument("--lab", action="append", help="only this lab (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch course for inspection")
    args = parser.parse_args(argv)
    results = run(args.lab, everything=args.all, keep=args.keep)
    print(format_matrix(results))
    return 1 if any(r.problems() for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
