"""A second opinion on every grade: a static scan for tampering and an out-of-process re-run.

nbgrader runs the hidden tests in the student's own kernel, after the student's code. Code in
an answer cell can therefore bend the grading: rebind ``check_int`` to a function that never
fails, register an IPython input transformer that blanks every later cell, patch a comparison
function inside a module, return an object whose ``==`` is always true. Two checks run after
nbgrader, outside the student's kernel:

1. **Scan** (``scan``): the student's cells are parsed (``ast``) and searched for the patterns
   above; each finding says where and what. A *tamper* finding holds the submission's
   autograded points for review; a *suspicious* one is only reported.
2. **Second opinion** (``second_opinion``): a fresh kernel runs the instructor's notebook
   (setup, explanations and all tests from ``source/``) with only the *definitions* of the
   student's cells: imports, functions and classes (side-effect-free defaults, only wrapping
   decorators), constants. No
   top-level statement of the student runs, so nothing can be patched before the tests.
   A test that nbgrader passed but the second opinion fails is flagged, and its points are
   withheld.

What stays out of reach: code *inside* a graded function runs during the tests in both
kernels, so a function body that patches the checker at call time is caught only by the scan;
reading files (the notebook with the hidden tests, the gradebook) is the sandbox's job
(``tools/sandbox.py``), which also runs the second opinion's kernel.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

TAMPER = "tamper"
SUSPICIOUS = "suspicious"

#: Names whose rebinding or patching defeats the tests.
_CHECKER_NAMES = re.compile(
    r"^(check_\w+|as_exact_\w+|diagnose|describe_call|expect_error|AnswerError|assert\w*|allclose|isclose|"
    r"array_equal|testing|equal|all|isinstance|type|int|float|len|print|AssertionError)$")
#: Module roots that student code has no business patching.
_PROTECTED_MODULES = {"course_lib", "grading", "builtins", "__builtins__", "np", "numpy", "torch", "math",
                      "pd", "pandas", "unittest", "pytest"}
#: Attribute assignments on modules that are legitimate settings.
_ALLOWED_SETTINGS = re.compile(r"^(torch\.backends\.|pd\.options\.|pandas\.options\.|np\.random\.seed|plt\.|"
                               r"matplotlib\.rcParams|torch\.set_)")


@dataclass(frozen=True)
class Finding:
    """One pattern found in a student's cell."""

    severity: str  # TAMPER or SUSPICIOUS
    cell: str  # grade_id or cell id
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.what} (cell {self.cell}, line {self.line})"


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + "." + node.attr
    if isinstance(node, ast.Call):
        return _dotted(node.func) + "()"
    if isinstance(node, ast.Subscript):
        return _dotted(node.value) + "[...]"
    return "?"


class _Scanner(ast.NodeVisitor):
    def __init__(self, cell: str) -> None:
        self.cell = cell
        self.findings: list[Finding] = []
        self.depth = 0  # > 0 inside a function or class body

    def add(self, severity: str, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(severity, self.cell, getattr(node, "lineno", 0), what))

    # definitions ------------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if _CHECKER_NAMES.match(node.name) and self.depth == 0:
            self.add(TAMPER, node, f"redefines the checker name {node.name!r}")
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        bases = {_dotted(b) for b in node.bases}
        methods = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))} | {
            t.id for n in node.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        numeric = bases & {"int", "float", "complex", "np.ndarray", "numpy.ndarray", "torch.Tensor", "str",
                           "np.int64", "np.float64"}
        if numeric and methods & {"__eq__", "__ne__", "__bool__", "__lt__", "__gt__", "__le__", "__ge__", "__float__",
                                  "__int__", "__index__", "__abs__", "__sub__", "__truediv__"}:
            self.add(TAMPER, node, f"class {node.name} subclasses {sorted(numeric)[0]} and overrides comparison/arithmetic")
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    # assignments ------------------------------------------------------------------------
    def _check_target(self, target: ast.AST, node: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._check_target(t, node)
            return
        if isinstance(target, ast.Name) and _CHECKER_NAMES.match(target.id):
            self.add(TAMPER, node, f"rebinds the checker name {target.id!r}")
        if isinstance(target, ast.Attribute):
            dotted = _dotted(target)
            root = dotted.split(".")[0]
            if _ALLOWED_SETTINGS.match(dotted):
                return
            if _CHECKER_NAMES.match(target.attr) or root in {"builtins", "__builtins__", "course_lib", "grading"}:
                self.add(TAMPER, node, f"patches {dotted}")
            elif root in _PROTECTED_MODULES or root in {"sys", "os", "importlib"}:
                self.add(SUSPICIOUS, node, f"assigns to module attribute {dotted}")
        if isinstance(target, ast.Subscript) and _dotted(target.value) in {"globals()", "os.environ", "sys.modules",
                                                                            "builtins.__dict__", "__builtins__"}:
            self.add(TAMPER, node, f"writes into {_dotted(target.value)}")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target, node)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_target(node.target, node)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._check_target(target, node)
        self.generic_visit(node)

    # calls and names --------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        last = name.split(".")[-1]
        if last in {"setattr", "delattr"} and node.args:
            self.add(TAMPER, node, f"{last}() on {_dotted(node.args[0])}")
        elif name.startswith("get_ipython()") and last not in {"run_line_magic", "system"}:
            self.add(TAMPER, node, f"manipulates the IPython shell ({name})")
        elif last in {"_getframe", "get_referrers", "get_objects", "stack", "currentframe"} or name.startswith("ctypes"):
            self.add(TAMPER, node, f"introspects the interpreter ({name})")
        elif name in {"os._exit", "os.kill", "signal.signal", "os.fork", "sys.exit", "exit", "quit"}:
            self.add(SUSPICIOUS, node, f"process control ({name})")
        elif name in {"open", "io.open", "pathlib.Path.read_text", "np.load", "numpy.load", "torch.load",
                      "sqlite3.connect", "glob.glob", "os.listdir", "os.walk", "os.scandir"}:
            args = " ".join(ast.unparse(a) for a in node.args)
            level = TAMPER if re.search(r"ipynb|\.db|gradebook|ref/|\.npz|source|autograded|\.\.", args) else SUSPICIOUS
            self.add(level, node, f"reads files: {name}({args[:60]})")
        elif name.startswith(("socket.", "subprocess.", "urllib.", "requests.")) or name in {"os.system", "os.popen"}:
            self.add(SUSPICIOUS, node, f"network or subprocess ({name})")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in {"input_transformers_cleanup", "input_transformers_post", "ast_transformers",
                         "set_custom_exc", "showtraceback", "events"}:
            self.add(TAMPER, node, f"touches IPython's {node.attr}")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and "NBGRADER" in node.value:
            self.add(TAMPER, node, f"looks for nbgrader's environment ({node.value!r})")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id == "is_autograding":
            self.add(TAMPER, node, "asks whether it is being graded (is_autograding)")


def scan_source(code: str, cell: str = "?") -> list[Finding]:
    """Findings in one cell's code (a cell that does not parse yields no finding: it just fails)."""
    try:
        tree = ast.parse(_strip_magics(code))
    except SyntaxError:
        return []
    scanner = _Scanner(cell)
    scanner.visit(tree)
    return scanner.findings


def _strip_magics(code: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in code.splitlines())


def _cell_key(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or cell.get("id", "?")


_HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.DOTALL)


def _norm(code: str) -> str:
    """A cell's code without hidden tests (the student's copy never has them), blank lines
    and trailing spaces: what must be equal for a cell to count as unchanged."""
    return "\n".join(line.rstrip() for line in _HIDDEN.sub("", code).splitlines() if line.strip())


def answer_cells(submission, source) -> dict[str, object]:
    """The submission's answer cells that the second opinion trusts: grade_id -> cell.

    A submission cell is the answer cell of a source answer cell (a code cell with nbgrader's
    ``solution`` flag) when: it is a code cell; its metadata says ``solution`` and neither
    ``grade`` nor ``locked`` (an answer is never a test); its grade_id occurs once in the whole
    submission (a copied cell keeps its metadata, so a duplicate id leaves both copies out); and
    it comes after the answer cells matched before it, in the source's order (a cell moved above
    an earlier answer is left out). Every other cell is untrusted: scanned, never used."""
    occurrences: dict[str, int] = {}
    for cell in submission.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid is not None:
            occurrences[gid] = occurrences.get(gid, 0) + 1
    index = {}
    for i, cell in enumerate(submission.cells):
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        if (cell.cell_type == "code" and gid is not None and occurrences[gid] == 1 and meta.get("solution")
                and not meta.get("grade") and not meta.get("locked")):
            index[gid] = i
    out = {}
    last = -1
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        if cell.cell_type == "code" and meta.get("solution") and gid in index and index[gid] > last:
            out[gid] = submission.cells[index[gid]]
            last = index[gid]
    return out


def student_cells(submission, source) -> list:
    """Code cells whose content the student controls; the scan reads every one of them.

    That is every code cell of the submission except those equal (hidden tests, blank lines
    and trailing spaces aside) to the source cell with the same grade_id (a locked cell nbgrader
    restores anyway) or, for a cell without grade_id, the same cell id: answer cells, added cells,
    edited cells, and cells with a grade_id the source does not have or has only once."""
    by_gid = {c.metadata["nbgrader"]["grade_id"]: c for c in source.cells
              if c.metadata.get("nbgrader", {}).get("grade_id") and c.cell_type == "code"}
    by_id = {c.get("id"): c for c in source.cells if c.cell_type == "code" and c.get("id")
             and not c.metadata.get("nbgrader", {}).get("grade_id")}
    answers = {gid for gid, c in by_gid.items() if c.metadata["nbgrader"].get("solution")}
    out = []
    for cell in submission.cells:
        if cell.cell_type != "code":
            continue
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        twin = by_gid.get(gid) if gid else by_id.get(cell.get("id"))
        if gid in answers or twin is None or _norm(cell.source) != _norm(twin.source):
            out.append(cell)
    return out


def structure_findings(submission, source) -> list[Finding]:
    """Cells whose nbgrader metadata does not match the source: a grade_id the lab does not
    have, a grade_id used twice, an answer cell out of place or claiming to be a test."""
    source_ids = {c.metadata["nbgrader"]["grade_id"] for c in source.cells
                  if c.metadata.get("nbgrader", {}).get("grade_id")}
    trusted = answer_cells(submission, source)
    answers = {c.metadata["nbgrader"]["grade_id"] for c in source.cells
               if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    findings, seen = [], {}
    for cell in submission.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid is None:
            continue
        seen[gid] = seen.get(gid, 0) + 1
        if gid not in source_ids and cell.cell_type == "code":
            findings.append(Finding(SUSPICIOUS, gid, 0, f"a cell with grade id {gid!r}, which the lab does not "
                                                         "have (scanned, not trusted)"))
    for gid, count in sorted(seen.items()):
        if count > 1 and gid in source_ids:
            findings.append(Finding(SUSPICIOUS, gid, 0, f"grade id {gid!r} appears {count} times"))
    for gid in sorted(answers - set(trusted)):
        if seen.get(gid) == 1:
            findings.append(Finding(SUSPICIOUS, gid, 0, f"answer cell {gid!r} is out of place or its metadata "
                                                        "changed: the second opinion cannot use it"))
    return findings


def scan(submission, source) -> list[Finding]:
    """Every finding in the student's cells of a submission, and in its cell structure."""
    findings = []
    for cell in student_cells(submission, source):
        findings.extend(scan_source(cell.source, _cell_key(cell)))
    return findings + structure_findings(submission, source)


# ---- definitions only ------------------------------------------------------------------------
def _literal(node: ast.AST | None) -> bool:
    """A value with no side effects: a literal, a name or a dotted name (``torch.float32``),
    or a tuple/list of those. Calls are never literals."""
    if node is None:
        return True
    if isinstance(node, (ast.Name, ast.Constant)):
        return True
    if isinstance(node, ast.Attribute):
        return _literal(node.value) and not isinstance(node.value, ast.Call)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_literal(e) for e in node.elts)
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


#: Decorators that only wrap a function or class when the definition runs.
_SAFE_DECORATORS = {"property", "staticmethod", "classmethod", "dataclass", "dataclasses.dataclass",
                    "torch.no_grad", "torch.inference_mode", "torch.no_grad()", "torch.inference_mode()",
                    "functools.cache", "functools.lru_cache", "functools.lru_cache()", "lru_cache", "cache",
                    "lru_cache()", "abstractmethod", "abc.abstractmethod", "typing.overload", "overload"}


def _safe_decorator(node: ast.AST) -> bool:
    dotted = _dotted(node)
    if isinstance(node, ast.Call):
        return (_dotted(node.func) + "()") in _SAFE_DECORATORS and not node.args and \
            all(_literal(k.value) for k in node.keywords)
    if isinstance(node, ast.Attribute) and node.attr in {"setter", "getter", "deleter"}:
        return isinstance(node.value, ast.Name)
    return dotted in _SAFE_DECORATORS


def _safe_def(node: ast.AST) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = node.args
        return (all(_safe_decorator(d) for d in node.decorator_list) and all(_literal(d) for d in args.defaults)
                and all(_literal(d) for d in args.kw_defaults) and not _CHECKER_NAMES.match(node.name)
                and all(a.annotation is None or isinstance(a.annotation, (ast.Name, ast.Attribute, ast.Constant,
                                                                          ast.Subscript, ast.BinOp))
                        for a in args.args + args.kwonlyargs))
    if isinstance(node, ast.ClassDef):
        return (all(_safe_decorator(d) for d in node.decorator_list) and not node.keywords
                and all(isinstance(b, (ast.Name, ast.Attribute)) for b in node.bases)
                and all(_safe_def(n) or isinstance(n, ast.Pass) or (isinstance(n, ast.Expr) and _literal(n.value))
                        for n in node.body))
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return (all(isinstance(t, ast.Name) and not _CHECKER_NAMES.match(t.id) for t in targets)
                and _literal(node.value) and not _dotted_names_checker(node.value))
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True  # docstrings
    return False


def _dotted_names_checker(node: ast.AST | None) -> bool:
    # ``x = check_int`` would keep a reference to the checker under another name: harmless,
    # but nothing a student needs either
    return node is not None and isinstance(node, (ast.Name, ast.Attribute)) and \
        bool(_CHECKER_NAMES.match(_dotted(node).split(".")[-1]))


def definitions_only(code: str) -> str:
    """The imports, functions, classes and constants of ``code``; every other statement dropped."""
    try:
        tree = ast.parse(_strip_magics(code))
    except SyntaxError:
        return code  # let it fail in the kernel, as it did for nbgrader
    kept = [node for node in tree.body if _safe_def(node)]
    return ast.unparse(ast.Module(body=kept, type_ignores=[])) if kept else "pass"


def second_opinion_notebook(submission, source):
    """The instructor's notebook with the student's answers reduced to their definitions.

    Only the answer cells of :func:`answer_cells` are used; code in cells the student added
    (or anywhere else) is left out. A missing answer cell raises NotImplementedError, as an
    untouched answer does."""
    answers = {gid: definitions_only(cell.source) for gid, cell in answer_cells(submission, source).items()}
    nb = nbformat.v4.new_notebook(metadata=source.metadata)
    for cell in source.cells:
        new = nbformat.from_dict(cell)
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            new.source = answers.get(meta["grade_id"],
                                     "raise NotImplementedError('answer cell missing, duplicated or moved')")
        if new.cell_type == "code":
            new.outputs, new.execution_count = [], None
        nb.cells.append(new)
    return nb


class SecondOpinionError(RuntimeError):
    """The second opinion could not be computed (dead kernel, time limit, cells not run)."""


def _configured_timeout(source_path: Path) -> int:
    """``Execute.timeout`` of the course's nbgrader_config.py (120 s), as nbgrader used it."""
    try:
        from tools.pipeline import _load_config

        root = source_path.resolve().parents[2]
        value = _load_config(root).Execute.get("timeout")
        return int(value) if value else 120
    except Exception:  # noqa: BLE001 - no readable config: nbgrader's course default
        return 120


def second_opinion(submission_path: Path, source_path: Path, timeout: int | None = None,
                   files_from: Path | None = None) -> dict[str, bool]:
    """Run the second opinion; return test grade_id -> passed.

    Raises :class:`SecondOpinionError` (or the kernel's own error) when it cannot be computed:
    the kernel died or was killed, a cell ran past the time limit and could not be interrupted,
    or a test cell did not run. The caller must count that as a failure, never as a pass.

    To be hard to tell apart from nbgrader's run, it runs the way nbgrader's autograde does:
    nbgrader's own Execute preprocessor (the sandboxed one wherever autograde uses the sandbox:
    same kernel command, same kind of throw-away uid, same limits), ``NBGRADER_EXECUTION=autograde``
    and no other nbgrader variable, the same per-cell time limit (``timeout``: None = nbgrader_config.py's),
    and a working folder with the lab's name (``/home/student/<lab>`` in the sandbox) holding the same
    files as the graded folder (``files_from``, the submission's ``autograded/`` folder; default
    the source's ``ref/``), without any notebook.
    """
    from nbgrader import utils
    from nbgrader.preprocessors import Execute

    from tools import sandbox

    executor_class = sandbox.SandboxExecute if sandbox.enabled() else Execute
    submission = nbformat.read(submission_path, as_version=4)
    source = nbformat.read(source_path, as_version=4)
    nb = second_opinion_notebook(submission, source)
    lab = source_path.parent.name
    tmp = Path(tempfile.mkdtemp(prefix="kvcourse-2nd-"))
    workdir = tmp / lab
    try:
        if files_from is not None and Path(files_from).is_dir():
            shutil.copytree(files_from, workdir, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"),
                            symlinks=False)
        else:
            workdir.mkdir()
            ref = source_path.parent / "ref"
            if ref.is_dir():
                shutil.copytree(ref, workdir / "ref")
        os.chmod(tmp, 0o755)
        env_backup = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("NBGRADER")}
        try:
            with utils.setenv(NBGRADER_EXECUTION="autograde"):
                executor = executor_class(timeout=timeout or _configured_timeout(source_path),
                                          interrupt_on_timeout=True, allow_errors=True, kernel_name="python3")
                executor.preprocess(nb, {"metadata": {"path": str(workdir)}})
        finally:
            for key in [k for k in os.environ if k.startswith("NBGRADER")]:
                os.environ.pop(key)
            os.environ.update(env_backup)
    finally:
        killed = __import__("tools.budget", fromlist=["x"]).pop_kill_reason(workdir)
        shutil.rmtree(tmp, ignore_errors=True)
    if killed:
        raise SecondOpinionError(killed)
    result = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            if cell.get("execution_count") is None:
                raise SecondOpinionError(f"test cell {meta['grade_id']} did not run")
            result[meta["grade_id"]] = not any(
                o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr")
                for o in cell.outputs)
    return result


@dataclass
class Verdict:
    """Integrity of one graded submission."""

    findings: list[Finding]
    disagreements: list[str]  # tests nbgrader passed but the second opinion failed (or could not check)
    unverified: str = ""  # why the second opinion could not be computed ("" when it was)
    note: str = ""  # what the instructor should know about the disagreements

    @property
    def held(self) -> bool:
        return any(f.severity == TAMPER for f in self.findings) or bool(self.disagreements)

    def summary(self) -> str:
        parts = [str(f) for f in self.findings if f.severity == TAMPER][:3]
        if self.unverified:
            parts.append(f"the second opinion could not be computed ({self.unverified}): points of "
                         + ", ".join(self.disagreements) + " held")
        elif self.disagreements:
            parts.append("second opinion fails " + ", ".join(self.disagreements))
        if self.note and self.disagreements:
            parts.append(self.note)
        parts += [str(f) for f in self.findings if f.severity == SUSPICIOUS][:2]
        return "; ".join(parts)
