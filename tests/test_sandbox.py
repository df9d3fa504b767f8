"""The grading sandbox (tools/sandbox.py): attacks graded in it learn nothing; without it they do.

The adversarial submissions (tools/variants/adversarial.py) are the Lab 00 solution with attack
code appended to an answer cell. Graded with the real nbgrader (tools/pipeline.py) in a scratch
course holding Lab 00 only.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from tools import feedback, pipeline, sandbox
from tools.variants import adversarial

ROOT = Path(__file__).resolve().parent.parent
LAB = adversarial.LAB

_PROBE = sandbox.probe() if sys.platform == "linux" else sandbox.Probe(False, "not Linux")
needs_bwrap = pytest.mark.skipif(not _PROBE.works, reason=f"bwrap sandbox cannot run here: {_PROBE.reason}")


def _hidden_lines(root: Path) -> set[str]:
    """Lines (12+ characters) of the hidden test blocks of the lab's source notebook that the
    student's release does not show anyway (a helper may be both visible and hidden)."""
    nb = nbformat.read(root / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    released = {x.strip() for c in nbformat.read(root / "release" / LAB / f"{LAB}.ipynb", as_version=4).cells
                for x in c.source.splitlines()}
    lines: set[str] = set()
    for cell in nb.cells:
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell.source, re.S):
            lines.update(x.strip() for x in block.splitlines() if len(x.strip()) >= 12 and x.strip() not in released)
    assert len(lines) > 20, "expected many hidden test lines in Lab 00"
    return lines


def _outputs_text(path: Path) -> str:
    """All outputs of a notebook as one string (streams, errors, display data)."""
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("evalue", ""))
            parts.extend(out.get("traceback", []))
            parts.extend(v for v in out.get("data", {}).values() if isinstance(v, str))
    return "\n".join(parts)


def _cell_output(path: Path, grade_id: str) -> str:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return "".join(o.get("text", "") for o in cell.outputs)
    raise KeyError(grade_id)


class Listener:
    """A TCP server on the host's loopback that counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A scratch course with Lab 00 released."""
    root = tmp_path_factory.mktemp("sandbox_course")
    (root / "source").mkdir()
    shutil.copytree(ROOT / "source" / LAB, root / "source" / LAB)
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    pipeline.release(root)
    return root


# ---------------------------------------------------------------------------------------------
# fast checks, no nbgrader


def test_setting_parses_env(monkeypatch):
    for raw, expected in [("", "auto"), ("auto", "auto"), ("1", "on"), ("on", "on"), ("0", "off"), ("OFF", "off")]:
        monkeypatch.setenv(sandbox.ENV_VAR, raw)
        assert sandbox.setting() == expected, raw
    monkeypatch.setenv(sandbox.ENV_VAR, "maybe")
    with pytest.raises(ValueError, match=sandbox.ENV_VAR):
        sandbox.setting()
    monkeypatch.setenv(sandbox.ENV_VAR, "0")
    assert not sandbox.enabled()
    assert "SANDBOX OFF" in sandbox.status_line()


def test_limits_reject_bad_values():
    with pytest.raises(ValueError, match="memory_bytes"):
        sandbox.Limits(memory_bytes=0)
    with pytest.raises(ValueError, match="tasks"):
        sandbox.Limits(tasks=True)


def test_pipeline_wires_sandbox_for_autograde_only(course):
    from nbgrader.preprocessors import Execute

    on = pipeline.make_api(course, sandbox=True).config
    off = pipeline.make_api(course, sandbox=False).config
    release = pipeline.make_api(course, for_release=True).config
    assert sandbox.SandboxExecute in on.Autograde.autograde_preprocessors
    assert sandbox.VisibleExecute in off.Autograde.autograde_preprocessors
    # nbgrader's own Execute (hidden tests in the student's kernel) is never used
    assert Execute not in on.Autograde.autograde_preprocessors + off.Autograde.autograde_preprocessors
    assert (on.CourseVerdict.sandboxed, off.CourseVerdict.sandboxed) == ("on", "off")
    for config in (off, release):
        assert sandbox.SandboxExecute not in list(config.Autograde.get("autograde_preprocessors", []))
    # the rest of the configured list (nbgrader_config.py) is kept, in order
    configured = list(pipeline._load_config(course).Autograde.autograde_preprocessors)
    assert "tools.sandbox.CourseExecute" in configured  # nbgrader's own commands sandbox too
    assert [p for p in on.Autograde.autograde_preprocessors if p is not sandbox.SandboxExecute] == \
        [p for p in configured if p != "tools.sandbox.CourseExecute"]
    # the pipeline runs the integrity check itself, for the batch; nbgrader's commands by the hook
    assert on.Autograde.post_convert_hook is None
    assert pipeline._load_config(course).Autograde.post_convert_hook == "tools.holds.integrity_hook"
    pps = list(off.GenerateFeedback.preprocessors)
    names = [p if isinstance(p, str) else p.__name__ for p in pps]
    assert sum(n.endswith("StripHiddenTestOutput") for n in names) == 1
    assert next(i for i, n in enumerate(names) if n.endswith("StripHiddenTestOutput")) < \
        next(i for i, n in enumerate(names) if n.endswith("ClearHiddenTests"))


def test_strip_hidden_test_output_redacts_quotes():
    """Before any hidden test ran, only verbatim quotes of hidden lines are removed."""
    source = ("check(f(1), 2)\n### BEGIN HIDDEN TESTS\nassert f(12345) == 24690, 'doubling'\nx = 1\n"
              "### END HIDDEN TESTS\n")
    nb = nbformat.v4.new_notebook()
    answer = nbformat.v4.new_code_cell("print(open('x.ipynb').read())")
    answer.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="ok\nassert f(12345) == 24690, 'doubling'\nx = 1\n"),
        nbformat.v4.new_output("error", ename="AssertionError", evalue="doubling",
                               traceback=["\x1b[0;32massert\x1b[0m f(12345) == 24690, 'doubling'", "plain line"]),
    ]
    nb.cells = [answer, nbformat.v4.new_code_cell(source)]
    nb, _ = feedback.StripHiddenTestOutput()(nb, {})  # as nbconvert calls it (only if enabled)
    out = nb.cells[0].outputs
    assert out[0].text == f"ok\n{feedback.REDACTED}\nx = 1\n"  # short lines are not quotes
    assert out[1].traceback == [feedback.REDACTED, "plain line"]


@pytest.mark.system
@needs_bwrap
def test_sandbox_sees_only_its_own_folder(tmp_path):
    """A fake course: the kernel's view holds reference files, not the notebook, the gradebook,
    source/ or another student's folder; no network but loopback; not root; limits set."""
    (tmp_path / "gradebook.db").write_text("SECRET-DB")
    (tmp_path / "source" / LAB).mkdir(parents=True)
    (tmp_path / "source" / LAB / "x.ipynb").write_text("SECRET-SOURCE")
    work = tmp_path / "autograded" / "alice" / LAB
    (work / "ref").mkdir(parents=True)
    (work / "ref" / "data.txt").write_text("reference")
    (work / f"{LAB}.ipynb").write_text("SECRET-HIDDEN-TESTS")
    (work / "link").symlink_to(tmp_path / "gradebook.db")
    (tmp_path / "autograded" / "bob" / LAB).mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    check = f"""
import os, resource, socket
root = {str(tmp_path)!r}
print("cwd", os.getcwd(), sorted(os.listdir(".")))
print("ref", open("ref/data.txt").read())
for p in [root + "/gradebook.db", root + "/source", root + "/autograded/bob", {str(work)!r} + "/{LAB}.ipynb",
          "{LAB}.ipynb", "link", {str(ROOT / "gradebook.db")!r}, {str(ROOT / "source")!r}]:
    print("exists", p, os.path.exists(p))
print("ifaces", [n for _, n in socket.if_nameindex()])
print("uid", os.getuid())
print("nproc", resource.getrlimit(resource.RLIMIT_NPROC)[0], "data", resource.getrlimit(resource.RLIMIT_DATA)[0])
open("scratch.txt", "w").write("writable")
"""
    uid = sandbox.sandbox_uid()
    runtime = sandbox.prepare_runtime_dir(uid)
    try:
        cmd = sandbox.wrap_command([sys.executable, "-c", check], work, runtime, uid=uid)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=work)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"cwd {sandbox.SANDBOX_HOME}/{LAB} ['ref']" in out
    assert "ref reference" in out
    assert "exists" in out and " True" not in out.replace("ref reference", ""), out
    assert "ifaces ['lo']" in out
    assert "uid 0\n" not in out
    assert f"nproc {sandbox.DEFAULT_LIMITS.tasks} data {sandbox.DEFAULT_LIMITS.memory_bytes}" in out
    assert not (work / "scratch.txt").exists(), "the kernel's writes must stay in its own tmpfs"


# ---------------------------------------------------------------------------------------------
# the adversarial submissions, graded by nbgrader


@pytest.mark.slow
@pytest.mark.system
@needs_bwrap
def test_attacks_learn_nothing_in_sandbox(course, monkeypatch):
    listener = Listener()
    students = {"solution": None}
    from tools.samples import write_submission

    write_submission(course, LAB, "solution", "solution")
    for name in adversarial.ATTACKS:
        student = f"attack_{name}"
        adversarial.write_attack(course, name, student, loopback_port=listener.port, i_have_a_sandbox=True,
                                 child_bytes=600 * 2**20)
        students[student] = name
    pairs = [(s, LAB) for s in students]
    # per submission: 1.5 GiB and 64 tasks in all (each child of the spread bomb stays below 1.5 GiB)
    monkeypatch.setattr(sandbox, "DEFAULT_LIMITS", sandbox.Limits(memory_bytes=3 * 2**29, tasks=64))
    runs = pipeline.autograde(course, pairs, verbose=False, sandbox=True, timeout=15)
    pipeline.feedback(course, [LAB])
    rows = {r.student: r for r in pipeline.collect_grades(course, runs) if r.student in students}

    # the batch went on: every submission has a result, correct ones full marks
    assert [(r.student, r.lab) for r in runs] == pairs
    for student in ["solution", "attack_read_notebook", "attack_walk_to_db", "attack_list_source", "attack_network"]:
        run = next(r for r in runs if r.student == student)
        assert run.success, (student, run.error)
        assert rows[student].auto_score == rows[student].auto_max > 0, (student, rows[student].failed_tests)
    for run in runs:  # the bombs were stopped by the limits, not by the cell timeout
        assert run.seconds < 60, (run.student, run.seconds)
    by_student = {r.student: r for r in runs}
    # a fork bomb and memory spread over processes each fail only their own submission, with the reason
    assert not by_student["attack_fork_bomb"].success
    assert "limit of 64 processes and threads" in by_student["attack_fork_bomb"].error
    assert not by_student["attack_memory_bomb_spread"].success
    assert "memory budget" in by_student["attack_memory_bomb_spread"].error

    # nothing learned: no hidden test, gradebook or source text in any output or feedback
    hidden = _hidden_lines(course)
    for student in students:
        for path in [course / "autograded" / student / LAB / f"{LAB}.ipynb",
                     course / "feedback" / student / LAB / f"{LAB}.html"]:
            if not path.exists():  # a failed (bomb) submission has neither
                continue
            if path.suffix == ".ipynb":
                text = _outputs_text(path)
                assert "LEAK" not in text, (student, path.name)  # (the HTML shows the attack's own code)
            else:
                text = html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))
            assert "BEGIN HIDDEN TESTS" not in text
            assert "SQLite format" not in text
            quoted = [line for line in hidden if line in text]
            assert not quoted, (student, path.name, quoted[:3])
    assert listener.connections == 0

    # the attacks did run (and found nothing), so the checks above are not vacuous
    def attack_output(student: str) -> str:
        return _cell_output(course / "autograded" / student / LAB / f"{LAB}.ipynb", adversarial.CELL)

    assert f"cwd {sandbox.SANDBOX_HOME}/{LAB} holds []" in attack_output("attack_read_notebook")
    assert "ATTACK walk_to_db: found []" in attack_output("attack_walk_to_db")
    assert "ATTACK list_source: found []" in attack_output("attack_list_source")
    assert attack_output("attack_network").count("network blocked") == 3


@pytest.mark.slow
@pytest.mark.system
@needs_bwrap
def test_without_sandbox_the_attacks_leak(course):
    """The old path (sandbox off): the notebook's hidden tests and the loopback are reachable;
    feedback still drops the lines that quote hidden tests. Bombs are never run here."""
    listener = Listener()
    adversarial.write_attack(course, "read_notebook", "open_read_notebook")
    adversarial.write_attack(course, "network", "open_network", loopback_port=listener.port)
    pairs = [("open_read_notebook", LAB), ("open_network", LAB)]
    runs = pipeline.autograde(course, pairs, verbose=False, sandbox=False, timeout=15)
    assert all(r.success for r in runs), runs
    notebook = course / "autograded" / "open_read_notebook" / LAB / f"{LAB}.ipynb"
    leaked = _cell_output(notebook, adversarial.CELL)
    assert "BEGIN HIDDEN TESTS" in leaked
    hidden = _hidden_lines(course)
    quoted = [line for line in hidden if line in leaked]
    assert quoted, "the unsandboxed kernel read the restored notebook"
    assert listener.connections >= 1, "the unsandboxed kernel reached the host's loopback"

    pipeline.feedback(course, [LAB])
    page = (course / "feedback" / "open_read_notebook" / LAB / f"{LAB}.html").read_text()
    assert feedback.REDACTED in page
    plain = [line for line in quoted if '"' not in line and "'" not in line and "<" not in line and "&" not in line]
    assert plain, "expected hidden lines without characters that HTML or JSON escape"
    assert not [line for line in plain if line in page]


@pytest.mark.system
@needs_bwrap
def test_bombs_need_the_sandbox(course):
    for bomb in adversarial.BOMBS:
        with pytest.raises(RuntimeError, match="sandbox"):
            adversarial.write_attack(course, bomb)
