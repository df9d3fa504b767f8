"""The verdict: every test of a lab, run where the student's code cannot reach it.

nbgrader runs the hidden tests in the student's kernel, after the student's code, so code in a
submission can bend them (patch a checker while a graded function runs, read the reference
file, print the calling test's source into the feedback). The verdict keeps the two apart:

* **the grader's process** (this module, started per submission as ``python -m tools.verdict``)
  runs the *instructor's* notebook from ``source/``: its setup cells, the ordinary cells the
  tests need, and every test cell, hidden tests included, with the course's checks, the
  expected outputs and the lab's reference files. It never runs a line of the student's code;
* **the student's process** (``tools/verdict_child.py``, inside the grading sandbox of
  ``tools/sandbox.py``, in an empty folder: no notebook, no reference file) runs the student's
  cells and answers requests. Where the instructor's notebook defines an answer (a solution
  cell), the grader binds each name it defines (``attention``, ``KVCache``, ...) to a proxy of
  the student's object (``tools.wire.Remote``): a call sends the inputs to the student's
  process and brings the result back as plain data (``tools/wire.py``: numbers, arrays,
  tensors, tables; never pickle), which the grader's own checks then judge, exact types
  included. A student's class used by the tests (the ``KVCache``) lives in the student's
  process and is driven step by step through its proxy.

A test cell passes when it runs to the end without an exception. A student's process that
dies, hangs or exits while a test runs fails that test (``tools.wire.PeerLost`` is a
``BaseException``, so no ``except Exception`` in a test can swallow it); the next test gets a
fresh process. A verdict that cannot be computed at all fails every test, never passes one.

Used by the integrity check (``tools/integrity.py``): a test's points stand only if both
nbgrader and the verdict pass it. Run by hand::

    python -m tools.verdict source/lab00_cache_sizing/lab00_cache_sizing.ipynb \\
        submitted/mistakes/lab00_cache_sizing/lab00_cache_sizing.ipynb

Why one module of this size: it is the grader's side of one protocol (bind the answers, run
each test, judge, report) whose steps share the proxies' state; the student's side is
``tools/verdict_child.py``, the data format ``tools/wire.py``, the warm server
``tools/verdict_server.py``, the nbgrader step ``tools/verdict_step.py``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import subprocess
import symtable
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from tools import wire

#: Seconds a test cell may wait on the student's process (nbgrader's own cell limit is 120 s).
CELL_TIMEOUT = 120
#: Seconds the student's cells may take together before the first test, at most (each cell is
#: also interrupted at the cell time limit, as nbgrader does).
SETUP_TIMEOUT = 600


@dataclass
class TestResult:
    """One test cell's outcome in the verdict."""

    passed: bool
    message: str = ""
    #: where a failure happened: "visible" (the part the student's notebook runs too), "hidden"
    #: (between the hidden-test markers), "" (the test did not run, or it passed)
    where: str = ""


@dataclass
class Verdict:
    """Outcome of every test cell of one submission (grade_id -> result)."""

    tests: dict[str, TestResult] = field(default_factory=dict)
    error: str = ""  # why the verdict could not run at all ("" when it ran)
    notes: list[str] = field(default_factory=list)  # restarts, cells of the student that raised
    seconds: float = 0.0

    def passed(self) -> dict[str, bool]:
        return {name: result.passed for name, result in self.tests.items()}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Verdict:
        data = json.loads(text)
        return cls({k: TestResult(**v) for k, v in data["tests"].items()}, data["error"], data["notes"],
                   data["seconds"])

    def failed_visible(self) -> list[str]:
        """Tests that failed in the part the student's notebook also runs (or did not run)."""
        return [t for t, r in self.tests.items() if not r.passed and r.where != "hidden"]


# --------------------------------------------------------------------------------------------
# reading the notebooks
# --------------------------------------------------------------------------------------------

def _nbgrader(cell: Any) -> dict:
    return cell.metadata.get("nbgrader", {})


_TRANSFORMED: dict[str, str] = {}


def transformed(code: str) -> str:
    """``code`` with IPython's syntax (magics, ``!`` commands) turned into Python, as the shell's
    static input transformations do; remembered (pure, and each cell is read several times:
    by the plans, and by the shell running it; the warm server's forks inherit the instructor
    cells' from its plan)."""
    text = _TRANSFORMED.get(code)
    if text is None:
        from IPython.core.inputtransformer2 import TransformerManager

        text = _TRANSFORMED[code] = TransformerManager().transform_cell(code)
    return text


def _python(code: str) -> ast.Module | None:
    """``code`` (IPython magics turned into calls) as an AST, or None if it does not parse."""
    try:
        return ast.parse(transformed(code))
    except SyntaxError:
        return None


def defined_names(code: str) -> list[str]:
    """Names a cell binds at the top level: functions, classes, assignments, imports."""
    tree = _python(code)
    names: list[str] = []
    for node in tree.body if tree else []:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names += [(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"]
    return list(dict.fromkeys(names))


def _used_names(code: str) -> set[str] | None:
    """Global names a cell reads: at its top level, or inside its functions and classes where
    they are not their own locals (a local ``table`` in a function needs no cell's ``table``)."""
    try:
        top = symtable.symtable(transformed(code), "<cell>", "exec")
    except SyntaxError:
        return None
    names: set[str] = set()
    scopes = [top]
    while scopes:
        scope = scopes.pop()
        for symbol in scope.get_symbols():
            if symbol.is_referenced() and (scope is top or symbol.is_global()):
                names.add(symbol.get_name())
        scopes += scope.get_children()
    return names


def _root_name(node: ast.AST | None, through_calls: bool = True) -> str | None:
    """``model`` for ``model.blocks[0].eval()``; with ``through_calls`` False, None for a call."""
    while isinstance(node, ast.Call | ast.Attribute | ast.Subscript):
        if isinstance(node, ast.Call) and not through_calls:
            return None
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _touches(code: str, names: set[str]) -> bool:
    """Whether a top-level statement of ``code`` may change one of ``names`` in place:
    ``model.eval()``, ``table["x"] = ...``, ``counts += 1``, ``init(model)``. A plain call of a
    function that is handed none of them (``cache_size_table(...)``) changes nothing of theirs."""
    tree = _python(code)
    if tree is None:
        return True
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name):
            arguments = [*node.value.args, *(k.value for k in node.value.keywords)]
            if any(_root_name(a, through_calls=False) in names for a in arguments):
                return True
            continue
        target = None
        if isinstance(node, ast.Expr):
            target = node.value
        elif isinstance(node, ast.Assign):
            target = next((t for t in node.targets if not isinstance(t, ast.Name)), None)
        elif isinstance(node, ast.AugAssign):
            target = node.target
        if _root_name(target) in names:
            return True
    return False


@dataclass
class Plan:
    """What the grader runs: ("answer", grade_id, names) binds proxies, ("code"/"test", id, code)
    runs instructor code."""

    steps: list[tuple[str, str, Any]]
    tests: list[str]


def plan(source: Any) -> Plan:
    """The grader's walk through the instructor's notebook.

    Ordinary cells run only when a later test needs a name they define or change (plots and
    benchmarks are left out); answer cells become proxies of the student's definitions.
    """
    cells: list[tuple[str, str, Any]] = []
    for index, cell in enumerate(source.cells):
        if cell.cell_type != "code":
            continue
        meta = _nbgrader(cell)
        grade_id = meta.get("grade_id") or f"cell-{index}"
        if meta.get("solution"):
            cells.append(("answer", grade_id, defined_names(cell.source)))
        elif meta.get("grade"):
            cells.append(("test", grade_id, cell.source))
        else:
            cells.append(("code", grade_id, cell.source))
    keep = _needed([(kind != "code", payload if kind != "answer" else "") for kind, _, payload in cells], set())
    steps = [c for c, k in zip(cells, keep, strict=True) if k]
    return Plan(steps, [gid for kind, gid, _ in cells if kind == "test"])


_PLANS: dict[tuple[str, int, int], tuple[Any, Plan]] = {}


def source_and_plan(source_path: Path) -> tuple[Any, Plan]:
    """The instructor's notebook and its :func:`plan`, read once per file version (the warm
    server reads them before it forks, so each verdict's copy finds them ready). Parsing only:
    no cell runs here."""
    stat = source_path.stat()
    key = (str(source_path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _PLANS:
        source = nbformat.read(source_path, as_version=4)
        _PLANS[key] = (source, plan(source))
    return _PLANS[key]


def _needed(cells: list[tuple[bool, str]], needed: set[str]) -> list[bool]:
    """Which cells to run, walking back from the end: a cell marked True always runs; another runs
    when it defines or changes a name that a later kept cell uses (or its code does not parse)."""
    keep = [False] * len(cells)
    for i in range(len(cells) - 1, -1, -1):
        always, code = cells[i]
        used = _used_names(code)
        if always or used is None or set(defined_names(code)) & needed or _touches(code, needed):
            keep[i] = True
            needed |= used or set()
    return keep


def student_code(submission: Any, source: Any) -> list[str]:
    """The code the student's process runs, in notebook order: the student's answer cells, and
    the other cells of the submission that define or change a name those need (imports, the
    student's own helpers, constants); plots and benchmarks are left out. The instructor's test
    cells never run there (matched by grade id; a cell claiming a grade id that the source does
    not have is the student's own code)."""
    test_ids = {_nbgrader(c).get("grade_id") for c in source.cells
                if c.cell_type == "code" and _nbgrader(c).get("grade")}
    answer_ids = {_nbgrader(c).get("grade_id") for c in source.cells
                  if c.cell_type == "code" and _nbgrader(c).get("solution")}
    api: set[str] = set()
    for cell in source.cells:
        if cell.cell_type == "code" and _nbgrader(cell).get("solution"):
            api |= set(defined_names(cell.source))
    cells = [(_nbgrader(c).get("grade_id") in answer_ids, c.source) for c in submission.cells
             if c.cell_type == "code" and not (_nbgrader(c).get("grade_id") in test_ids and _nbgrader(c).get("grade"))]
    keep = _needed(cells, set(api))
    return [code for (_, code), k in zip(cells, keep, strict=True) if k]


# --------------------------------------------------------------------------------------------
# the student's process
# --------------------------------------------------------------------------------------------

def child_program() -> str:
    """The student's process's program, handed over on its command line: ``tools/wire.py`` as the
    module ``wire``, then ``tools/verdict_child.py``. No file of it is in the working folder,
    which looks like the notebook's (``/home/student/<lab>``, empty)."""
    here = Path(__file__).resolve().parent
    wire_source = (here / "wire.py").read_text()
    child_source = (here / "verdict_child.py").read_text()
    return ("import sys, types\n"
            "wire = types.ModuleType('wire')\n"
            f"exec(compile({wire_source!r}, 'wire.py', 'exec'), wire.__dict__)\n"
            "sys.modules['wire'] = wire\n"
            f"exec(compile({child_source!r}, 'verdict_child.py', 'exec'), {{'__name__': '__main__'}})\n")


class StudentProcess:
    """The sandboxed child holding the student's code, and the connection to it."""

    def __init__(self, cells: list[str], sandboxed: bool, lab: str, cell_timeout: float = CELL_TIMEOUT) -> None:
        self.cells = cells
        self.cell_timeout = cell_timeout
        self.sandboxed = sandboxed
        self.scratch = Path(tempfile.mkdtemp(prefix="kvverdict-"))
        self.folder = self.scratch / lab  # the child's working folder, named as in nbgrader's run
        self.folder.mkdir()
        self.scratch.chmod(0o755)
        self.runtime: Path | None = None
        self.uid: int | None = None
        self.budget: Any = None
        self.process: subprocess.Popen | None = None
        self.conn: wire.Connection | None = None
        self.failed_cells: list = []
        self.over_budget: list[str] = []  # why a process was killed for its memory or tasks

    def start(self) -> None:
        cmd = [sys.executable, "-u", "-c", child_program()]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NBGRADER", "KVCOURSE"))}
        env["NBGRADER_EXECUTION"] = "autograde"  # the labs' quick mode, exactly as in nbgrader's run
        env["MPLBACKEND"] = "Agg"
        if self.sandboxed:  # the sandbox passes NBGRADER_EXECUTION through; run() sets it
            from tools import budget, sandbox, warm

            warm_socket = warm.socket_path()
            self.uid = sandbox.sandbox_uid()
            self.runtime = sandbox.prepare_runtime_dir(self.uid, Path(warm_socket).parent if warm_socket else None)
            sandbox.seal_runtime_dir(self.runtime)  # nothing for the child to write there
            limits = sandbox.DEFAULT_LIMITS  # the same budget as the notebook's kernel
            self.budget = budget.new_budget(limits.memory_bytes, limits.tasks, str(self.folder), self.uid)
            if warm_socket:  # a fork of the warm parent (tools/zygote.py), isolated the same way
                cmd = warm.copy_command(warm_socket, self.runtime, uid=self.uid, lab=self.folder.name,
                                        limits=limits, procs_files=self.budget.procs_files(),
                                        program=child_program(),
                                        env={**sandbox.sandbox_env(), "NBGRADER_EXECUTION": "autograde"})
            else:
                cmd = sandbox.wrap_command(cmd, self.folder, self.runtime, limits=limits, uid=self.uid,
                                           prefix=self.budget.prefix())
        self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=env, cwd=self.folder,
                                        start_new_session=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        if self.budget is not None:
            self.budget.watch(self.process.pid)
        self.conn = wire.Connection(self.process.stdout.fileno(), self.process.stdin.fileno(),
                                    side="grader", ops=wire.GRADER_OPS)
        wire.write_message(self.conn.fd_out, {"cells": self.cells, "cell_timeout": self.cell_timeout})
        setup_limit = min(SETUP_TIMEOUT, self.cell_timeout * (len(self.cells) + 1))
        ready = wire.read_message(self.conn.fd_in, time.monotonic() + setup_limit)
        if type(ready) is not dict or ready.get("ready") is not True:
            raise wire.PeerLost("the student's process did not start properly")
        self.failed_cells = ready.get("failed", [])

    def lookup(self, name: str) -> Any:
        assert self.conn is not None
        return self.conn.request("name", name)

    def stop(self) -> None:
        if self.process is not None:
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    pipe.close()
            try:  # its own session: whatever it started goes too
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
            self.process.wait()
            self.process = None
        if self.conn is not None:
            self.conn.closed = True
        if self.budget is not None:  # whatever the student's code left running dies with it
            reason = self.budget.exceeded()
            if reason:
                self.over_budget.append(reason)
            self.budget.close()
            self.budget = None
        if self.uid is not None:
            from tools import sandbox

            sandbox.release_uid(self.uid)
            self.uid = None
        if self.runtime is not None:
            from tools import warm

            warm.cleanup(self.runtime)
            shutil.rmtree(self.runtime, ignore_errors=True)
            self.runtime = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# the grader's run
# --------------------------------------------------------------------------------------------

def _sandbox_wanted() -> bool:
    from tools import sandbox

    return sandbox.enabled()


def _bind_answers(shell: Any, student: StudentProcess, names: list[str]) -> None:
    for name in names:
        try:
            value = student.lookup(name)
            if isinstance(value, wire.Remote):
                value.bind_name(name)
            shell.user_ns[name] = value
        except NameError:
            shell.user_ns.pop(name, None)  # the student did not define it: tests meet a NameError


def _describe(error: BaseException) -> str:
    if isinstance(error, wire.PeerLost):
        return f"the submission's code stopped answering ({error})"
    return f"{type(error).__name__}: {error}"[:2000]


def run(submission_path: Path, source_path: Path, sandboxed: bool | None = None,
        cell_timeout: float = CELL_TIMEOUT) -> Verdict:
    """The verdict on one submission. Call it in a process of its own (``python -m tools.verdict``):
    the instructor's cells run in this process's IPython shell."""
    t0 = time.perf_counter()
    source, steps = source_and_plan(source_path)
    verdict = Verdict()
    try:
        submission = nbformat.read(submission_path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - an unreadable notebook fails every test
        verdict.error = f"the submission could not be read: {type(exc).__name__}"
        verdict.tests = {t: TestResult(False, verdict.error) for t in steps.tests}
        return verdict
    sandboxed = _sandbox_wanted() if sandboxed is None else sandboxed
    student = StudentProcess(student_code(submission, source), sandboxed, source_path.parent.name, cell_timeout)
    workdir = Path(tempfile.mkdtemp(prefix="kvverdict-grader-"))
    ref = source_path.parent / "ref"
    if ref.is_dir():
        shutil.copytree(ref, workdir / "ref")
    old_cwd = os.getcwd()
    os.chdir(workdir)
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        _run_steps(steps, student, verdict, cell_timeout)
    finally:
        os.chdir(old_cwd)
        student.close()
        verdict.notes += student.over_budget
        shutil.rmtree(workdir, ignore_errors=True)
    verdict.seconds = round(time.perf_counter() - t0, 2)
    return verdict


def _no_traceback(*args: Any, **kwargs: Any) -> None:
    """Stands in for the grader shell's traceback display (see :func:`_run_steps`)."""


def _run_steps(steps: Plan, student: StudentProcess, verdict: Verdict, cell_timeout: float) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    existed = InteractiveShell.initialized()
    shell = InteractiveShell.instance(config=config)
    shell.input_transformer_manager.transform_cell = transformed  # the same transformation, remembered
    # A failing cell's exception is read from run_cell's result; its traceback would be formatted
    # (~25-90 ms each, syntax colouring included) for an output nobody reads.
    shell.showtraceback = _no_traceback
    shell.showsyntaxerror = _no_traceback
    if existed:  # nothing left from an earlier run in this process (a fresh shell is empty; its
        shell.reset(new_session=False)  # reset's garbage collection costs ~0.1 s in a big heap)
    bound: list[str] = []
    alive = False

    def fresh_student() -> bool:
        nonlocal alive
        student.stop()
        verdict.notes += student.over_budget
        student.over_budget = []
        try:
            student.start()
        except (wire.PeerLost, wire.WireError, OSError) as exc:
            verdict.notes.append(f"the submission's code could not start: {_describe(exc)}")
            alive = False
            return False
        for index, error in student.failed_cells:
            verdict.notes.append(f"the submission's code cell {index + 1} raised {error}")
        alive = True
        _bind_answers(shell, student, bound)
        return True

    if not fresh_student():
        verdict.error = verdict.notes[-1]
    for kind, grade_id, payload in steps.steps:
        if kind == "answer":
            bound += payload
            if alive:
                _bind_answers(shell, student, payload)
            continue
        if not alive and not verdict.error:  # a fresh process, at most once per cell
            verdict.notes.append(f"fresh process for the submission's code before {grade_id}")
            fresh_student()
        if not alive:
            if kind == "test":
                verdict.tests[grade_id] = TestResult(False, "the submission's code is not running "
                                                            "(it crashed, hung or could not start earlier)")
            continue
        assert student.conn is not None
        student.conn.deadline = time.monotonic() + cell_timeout
        result = shell.run_cell(payload, store_history=False, silent=True)
        student.conn.deadline = None
        error = result.error_before_exec or result.error_in_exec
        if student.conn.closed or isinstance(error, wire.PeerLost):
            alive = False
        if kind == "test":
            message = "" if error is None else _describe(error)
            over = student.budget.exceeded() if not alive and student.budget is not None else None
            if over:
                message += f" ({over})"
            where = "" if error is None else failed_part(payload, error)
            verdict.tests[grade_id] = TestResult(error is None, message, where)
    for grade_id in steps.tests:
        verdict.tests.setdefault(grade_id, TestResult(False, "not run"))


def hidden_lines(code: str) -> range:
    """Line numbers (1-based) of a test cell's hidden block, markers included (empty if none)."""
    lines = code.splitlines()
    begin = next((i for i, line in enumerate(lines) if line.strip() == "### BEGIN HIDDEN TESTS"), None)
    if begin is None:
        return range(0)
    end = next((i for i in range(begin, len(lines)) if lines[i].strip() == "### END HIDDEN TESTS"), len(lines) - 1)
    return range(begin + 1, end + 2)


def failed_part(code: str, error: BaseException) -> str:
    """"hidden" when the statement of the test cell that raised ``error`` lies in its hidden
    block, else "visible" (the cell's own top-level frame is the last ``<module>`` frame of the
    traceback; the course's checks are functions)."""
    line = None
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "<module>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return "hidden" if line is not None and line in hidden_lines(code) else "visible"


def run_in_subprocess(submission_path: Path, source_path: Path, timeout: float = 900,
                      sandboxed: bool | None = None, cell_timeout: float = CELL_TIMEOUT,
                      warm: bool = False) -> Verdict:
    """:func:`run` in a process of its own (the instructor's cells must not share a process with
    anything else): with ``warm``, a fresh fork of this process's warm server
    (``tools/verdict_server.py``: Python and the imports paid once), else a new Python process.
    A verdict that cannot be computed fails every test."""
    why = ""
    if warm:
        from tools import verdict_server

        status, text = verdict_server.client().run(submission_path, source_path, sandboxed, cell_timeout, timeout)
        if status == "ok":
            return Verdict.from_json(text)
        why = text if status == "failed" else ""  # unavailable: the cold way below
    if not why:
        why = _run_cold(submission_path, source_path, timeout, sandboxed, cell_timeout)
        if isinstance(why, Verdict):
            return why
    source = nbformat.read(source_path, as_version=4)
    tests = plan(source).tests
    return Verdict({t: TestResult(False, why) for t in tests}, error=why)


def _run_cold(submission_path: Path, source_path: Path, timeout: float, sandboxed: bool | None,
              cell_timeout: float) -> Verdict | str:
    """``python -m tools.verdict ... --json``: the verdict, or why it could not be computed."""
    cmd = [sys.executable, "-m", "tools.verdict", str(source_path), str(submission_path), "--json",
           "--cell-timeout", str(cell_timeout)]
    if sandboxed is False:
        cmd.append("--no-sandbox")
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=root)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode == 0 and lines:
            return Verdict.from_json(done.stdout[done.stdout.index("{"):])
        return f"the verdict's process failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        return f"the verdict took longer than {timeout:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="the instructor's notebook (source/<lab>/<lab>.ipynb)")
    parser.add_argument("submission", type=Path, help="the student's notebook")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    parser.add_argument("--no-sandbox", action="store_true", help="run the student's code without bwrap")
    parser.add_argument("--cell-timeout", type=float, default=CELL_TIMEOUT,
                        help=f"seconds a test may wait on the student's code (default {CELL_TIMEOUT})")
    args = parser.parse_args(argv)
    shown = sys.stdout
    if args.json:  # what the instructor's cells print is not part of the answer
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    try:
        verdict = run(args.submission.resolve(), args.source.resolve(),
                      sandboxed=False if args.no_sandbox else None, cell_timeout=args.cell_timeout)
    finally:
        sys.stdout = shown
    if args.json:
        sys.stdout.write(verdict.to_json() + "\n")
    else:
        for name, result in verdict.tests.items():
            print(f"{'pass' if result.passed else 'FAIL'}  {name}  {result.message[:300]}")
        for note in verdict.notes:
            print(f"note: {note}")
        print(f"{sum(r.passed for r in verdict.tests.values())}/{len(verdict.tests)} tests in {verdict.seconds} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
