"""The student's side of the verdict: runs in the grading sandbox, holds the student's code.

Started by ``tools/verdict.py`` as ``python -c <program>``, the program being ``tools/wire.py``
(as the module ``wire``) and this file, in an empty working folder named like the notebook's.
Standard input and output are the conversation with the grader; everything else the
student's code prints goes nowhere (it cannot reach the feedback). Steps:

1. read the first message: the code of the student's cells (those the answers need) and the
   time limit of a cell, and run them in order in an IPython shell, as a kernel would: a cell
   still running at the limit is interrupted and the next one runs (as nbgrader does);
2. answer ``{"ready": ...}`` with the cells that raised;
3. answer the grader's requests (the student's functions and classes by name, calls, attributes
   of the student's objects) until the grader closes the pipe.

Nothing here checks anything: the checks, the hidden inputs' expected outputs and the
reference files stay in the grader's process.
"""

from __future__ import annotations

import os
import signal
import sys


def _take_over_standard_streams() -> tuple[int, int]:
    """The conversation's file descriptors; fd 0, 1 and 2 then lead nowhere."""
    fd_in, fd_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - kept open for the process's life
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    return fd_in, fd_out


def main() -> int:
    import wire  # handed over with this program (tools/ is not visible in the sandbox)

    fd_in, fd_out = _take_over_standard_streams()
    setup = wire.read_message(fd_in)
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    limit = max(1, int(setup.get("cell_timeout", 120)))

    def interrupt(signum: int, frame: object) -> None:
        raise TimeoutError(f"the cell ran past the {limit} s limit and was interrupted")

    signal.signal(signal.SIGALRM, interrupt)
    failed = []
    for index, code in enumerate(setup.get("cells", [])):
        signal.alarm(limit)
        try:
            result = shell.run_cell(str(code), store_history=False, silent=True)
        finally:
            signal.alarm(0)
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            failed.append([index, f"{type(error).__name__}: {error}"[:300]])

    def name(key: str) -> object:
        try:
            return shell.user_ns[key]
        except KeyError:
            raise NameError(f"name {key!r} is not defined") from None

    conn = wire.Connection(fd_in, fd_out, side="child", ops=wire.ALL_OPS, names=name)
    wire.write_message(fd_out, {"ready": True, "failed": failed})
    conn.serve_forever()
    return 0


if __name__ == "__main__":
    os._exit(main())
