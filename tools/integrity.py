"""After nbgrader: a static scan for tampering, and the verdict on every test.

nbgrader runs the hidden tests in the student's own kernel, after the student's code. Code in
an answer cell can therefore bend the grading: rebind ``check_int`` to a function that never
fails, register an IPython input transformer that blanks every later cell, patch a comparison
function while a graded function runs, read the reference file, return an object whose ``==``
is always true. Two checks run after nbgrader, outside the student's kernel:

1. **Scan** (``scan``): the student's cells are parsed (``ast``) and searched for the patterns
   above; each finding says where and what. A *tamper* finding holds the submission's
   autograded points for review; a *suspicious* one is only reported.
2. **Verdict** (``tools/verdict.py``): the instructor's tests run again in a grader process
   that holds no student code, against the student's definitions running in a sandboxed
   process of their own; values cross between the two as plain data only. A test that nbgrader
   passed but the verdict fails keeps no points (held for review with the verdict's message),
   so a submission's autograded score is the lower of the two. A verdict that cannot be
   computed fails every test.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

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
    """The submission's answer cells, recognised as such: grade_id -> cell.

    A submission cell is the answer cell of a source answer cell (a code cell with nbgrader's
    ``solution`` flag) when: it is a code cell; its metadata says ``solution`` and neither
    ``grade`` nor ``locked`` (an answer is never a test); its grade_id occurs once in the whole
    submission (a copied cell keeps its metadata, so a duplicate id leaves both copies out); and
    it comes after the answer cells matched before it, in the source's order (a cell moved above
    an earlier answer is left out). Every other cell is reported by :func:`structure_findings`."""
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
                                                        "changed"))
    return findings


def scan(submission, source) -> list[Finding]:
    """Every finding in the student's cells of a submission, and in its cell structure."""
    findings = []
    for cell in student_cells(submission, source):
        findings.extend(scan_source(cell.source, _cell_key(cell)))
    return findings + structure_findings(submission, source)


# ---- definitions only ------------------------------------------------------------------------
@dataclass
class Verdict:
    """Integrity of one graded submission."""

    findings: list[Finding]
    disagreements: list[str]  # tests nbgrader passed but the verdict failed (or could not check)
    unverified: str = ""  # why the verdict could not be computed ("" when it was)
    messages: dict[str, str] = field(default_factory=dict)  # test -> the verdict's failure message

    @property
    def held(self) -> bool:
        return any(f.severity == TAMPER for f in self.findings) or bool(self.disagreements)

    def summary(self) -> str:
        parts = [str(f) for f in self.findings if f.severity == TAMPER][:3]
        if self.unverified:
            parts.append(f"the verdict could not be computed ({self.unverified}): points of "
                         + ", ".join(self.disagreements) + " held")
        elif self.disagreements:
            shown = [f"{t} ({self.messages[t].splitlines()[0][:160]})" if self.messages.get(t) else t
                     for t in self.disagreements[:3]]
            more = len(self.disagreements) - len(shown)
            parts.append("the verdict fails " + ", ".join(shown) + (f" and {more} more" if more else ""))
        parts += [str(f) for f in self.findings if f.severity == SUSPICIOUS][:2]
        return "; ".join(parts)
