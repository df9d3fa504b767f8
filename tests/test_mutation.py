"""Mutation testing: correct variants get full marks, mutants lose points with named feedback.

`make test` runs a quick subset with the real nbgrader; `make mutation` runs every variant.
"""

from __future__ import annotations

import pytest

from tools import mutation
from tools.samples import available_labs


@pytest.mark.slow
def test_mutation_subset():
    results = mutation.run(available_labs(), everything=False, verbose=False)
    print(mutation.format_matrix(results))
    assert results, "no variants found"
    assert {r.kind for r in results} == {"correct", "mutant"}
    problems = {r.variant: r.problems() for r in results if r.problems()}
    assert not problems, problems


def test_every_mutant_names_a_test_and_a_message():
    from tools.samples import load_variants

    for lab in available_labs():
        module = load_variants(lab)
        if module is None:
            continue
        names = [m["name"] for m in module.MUTANTS]
        assert len(names) == len(set(names)), f"{lab}: duplicate mutant names"
        for m in module.MUTANTS:
            assert m["fails"] and m["message"], m["name"]
        assert set(module.SAMPLE_MISTAKES) <= set(names)
