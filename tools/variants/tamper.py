"""Tampering and broken submissions, built on Lab 00.

TAMPER: submissions whose answers are all wrong but which try to get credit anyway, each with
an attack that got full marks against plain nbgrader 0.9.6.
After grading and the integrity check, each must end with 0 autograded points and be flagged.

BROKEN: submissions that break the grader rather than fool it. Each must be graded or reported
without stopping the batch.

Declarations only: ``tools/submissions.py`` writes them (``write_tamper``, ``write_broken``).
"""

from __future__ import annotations

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

#: Broken submissions that are the solution with code put before one answer: name -> {cell: code}.
BROKEN_CELLS: dict[str, dict[str, str]] = {
    "infinite-loop": {"kv_cache_bytes": "while True:\n    pass"},
    "ignores-interrupt": {"kv_cache_bytes": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                            "while True:\n    pass"},
    "os-exit": {"kv_cache_bytes": "import os\nos._exit(1)"},
    "huge-output": {"kv_cache_bytes": "print('x' * 50_000_000)"},
}
#: The one cell of "other-lab", a notebook of another assignment.
OTHER_LAB_CELL = "print('this is a different assignment')"
#: What "no-notebook" holds instead of a notebook.
NO_NOTEBOOK_NOTE = "I forgot to attach the notebook\n"
