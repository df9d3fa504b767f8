"""Tampering and broken submissions, built on Lab 00.

TAMPER: submissions whose answers are all wrong but which try to get credit anyway, each with
an attack that got full marks against plain nbgrader 0.9.6.
After grading and the integrity check, each must end with 0 autograded points and be flagged.

BROKEN: submissions that break the grader rather than fool it. Each must be graded or reported
without stopping the batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from tools import layout

LAB = "lab00_cache_sizing"

#: Wrong but running answers: every test fails on its values, none raises NotImplementedError.
WRONG_ANSWERS: dict[str, str] = {
    "kv_bytes_per_token": "def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):\n    return 1\n",
    "kv_cache_bytes": "def kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch_size, bytes_per_elem):\n"
                      "    return 1\n",
    "cache_size_table": "def cache_size_table(names, seq_lens):\n    return pd.DataFrame()\n",
    "max_context_len": "def max_context_len(mem_bytes, weight_bytes, n_layers, n_kv_heads, head_dim, batch_size,"
                       " bytes_per_elem):\n    return 1\n",
    "gpus_to_hold_weights": "def gpus_to_hold_weights(n_params, bytes_per_param, gpu_mem_bytes):\n    return 1\n",
    "max_batch_size": "def max_batch_size(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree=1):\n"
                      "    return 1\n",
    "max_batch_size_tp": "def max_batch_size_tp(gpu_mem_bytes, weight_bytes, per_seq_cache_bytes, tp_degree,"
                         " n_kv_heads):\n    return 1\n",
    "model_kv_bytes_per_token": "def model_kv_bytes_per_token(spec, bytes_per_elem):\n    return 1\n",
    "preallocation_waste": "def preallocation_waste(max_seq_len, actual_lens):\n    return 0.5\n",
}


def _with(cell: str, extra: str) -> dict[str, str]:
    cells = dict(WRONG_ANSWERS)
    cells[cell] = cells[cell] + "\n" + extra
    return cells


TAMPER: list[dict] = [
    {"name": "rebind-checker", "what": "rebinds check_int/check_real/expect_error at top level",
     "cells": _with("kv_bytes_per_token", "check_int = check_real = expect_error = lambda *a, **k: None\n")},
    {"name": "input-transformer", "what": "an IPython input transformer blanks every later cell",
     "cells": _with("kv_bytes_per_token", "get_ipython().input_transformers_cleanup.append(lambda lines: [])\n")},
    {"name": "patch-at-call-time", "what": "the answer function rebinds the checker when it is called",
     "cells": {**WRONG_ANSWERS, "kv_bytes_per_token":
               "def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):\n"
               "    globals()['check_int'] = lambda *a, **k: None\n"
               "    globals()['check_real'] = lambda *a, **k: None\n"
               "    globals()['expect_error'] = lambda *a, **k: None\n"
               "    return 1\n"}},
    {"name": "int-subclass", "what": "returns an int whose == is always True",
     "cells": {**WRONG_ANSWERS, "kv_bytes_per_token":
               "class Agreeable(int):\n"
               "    def __eq__(self, other):\n        return True\n"
               "    def __ne__(self, other):\n        return False\n"
               "    __hash__ = int.__hash__\n\n"
               "def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_elem):\n"
               "    return Agreeable(1)\n"}},
    {"name": "grader-env", "what": "behaves differently when NBGRADER_EXECUTION is set",
     "cells": _with("kv_bytes_per_token",
                    "import os\nif os.environ.get('NBGRADER_EXECUTION') == 'autograde':\n"
                    "    check_int = lambda *a, **k: None\n")},
]


def write_tamper(root: Path, attack: dict, student: str) -> Path:
    """Write a tampering submission for ``attack`` as ``student``."""
    from tools.samples import fill

    release_nb = nbformat.read(layout.release_notebook(LAB, root), as_version=4)
    target = layout.submitted_notebook(student, LAB, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(fill(release_nb, attack["cells"]), target)
    return target


# ---- broken submissions -------------------------------------------------------------------------
def _solution_with(root: Path, cell: str, code: str):
    from tools.samples import fill, solution_code

    cells = solution_code(root, LAB)
    cells[cell] = code + "\n\n" + cells[cell]
    return fill(nbformat.read(layout.release_notebook(LAB, root), as_version=4), cells)


def _write_nb(nb, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)


#: name -> (description, expected outcome: "graded" (maybe partial) or "not graded")
BROKEN: dict[str, tuple[str, str]] = {
    "infinite-loop": ("a top-level loop that never ends in one answer cell; interrupted at the time limit, "
                      "the rest still graded", "graded"),
    "ignores-interrupt": ("a loop that ignores SIGINT: the kernel cannot be interrupted", "not graded"),
    "os-exit": ("os._exit(1) kills the kernel", "not graded"),
    "invalid-json": ("the file is not valid JSON", "not graded"),
    "other-lab": ("the notebook of another assignment under this lab's name", "graded"),
    "no-notebook": ("the submission folder holds no notebook", "not graded"),
    "huge-output": ("an answer cell prints 50 MB", "graded"),
}


def write_broken(root: Path, name: str, student: str) -> Path:
    """Write the broken submission ``name`` (a key of BROKEN) as ``student``."""
    folder = layout.submission_dir(student, LAB, root)
    target = folder / f"{LAB}.ipynb"
    if name == "infinite-loop":
        _write_nb(_solution_with(root, "kv_cache_bytes", "while True:\n    pass"), target)
    elif name == "ignores-interrupt":
        _write_nb(_solution_with(root, "kv_cache_bytes",
                                 "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"),
                  target)
    elif name == "os-exit":
        _write_nb(_solution_with(root, "kv_cache_bytes", "import os\nos._exit(1)"), target)
    elif name == "invalid-json":
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(nbformat.v4.new_notebook())
        target.write_text(text[: len(text) // 2])
    elif name == "other-lab":
        other = nbformat.v4.new_notebook()
        other.cells = [nbformat.v4.new_code_cell("print('this is a different assignment')")]
        _write_nb(other, target)
    elif name == "no-notebook":
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "notes.txt").write_text("I forgot to attach the notebook\n")
    elif name == "huge-output":
        _write_nb(_solution_with(root, "kv_cache_bytes", "print('x' * 50_000_000)"), target)
    else:
        raise KeyError(f"unknown broken submission {name!r}; known: {', '.join(BROKEN)}")
    return folder
