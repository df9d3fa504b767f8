"""What a graded notebook and its feedback page keep of the student's outputs.

nbgrader's autograde stores every output of the student's kernel in the graded notebook, and
``nbgrader generate_feedback`` turns that notebook into the page the student reads. These are
the course's steps there, named in ``nbgrader_config.py``:

* :class:`CapOutputSize` (autograde): every output cut to a size, so one huge print cannot make
  a 50 MB notebook and feedback page;
* :class:`StripHiddenTestOutput` (feedback): a test cell's page shows the course's failure
  message and the verdict's own words (``tools/verdict_step.py``), never hidden test code or
  what graded code printed about it;
* :func:`clean_feedback_folder` (feedback's post-convert hook): only the HTML pages, and the two
  files nbgrader's release_feedback needs, stay in ``feedback/<student>/<lab>/``;
* the late note of a late submission (``tools/late_feedback.py``), last.

The student's kernel itself (which runs the visible tests only) is ``tools/sandbox.py``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Int

from tools import layout


class CapOutputSize(Preprocessor):
    """Cut every output of a graded notebook to ``max_chars`` characters.

    nbgrader's own ``LimitOutput`` counts lines, so one ``print('x' * 50_000_000)`` still
    writes a 50 MB notebook and a 50 MB feedback page. Runs after execution, before grades
    are saved; error outputs (the test messages) are kept.
    """

    max_chars = Int(100_000, help="Largest text of one output, in characters").tag(config=True)
    enabled = Bool(True, help="nbconvert runs a preprocessor only when it is enabled").tag(config=True)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return text[: self.max_chars] + f"\n... [output cut: {len(text):,} characters, limit {self.max_chars:,}]\n"

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = self._cut(output.get("text", ""))
            elif output.get("output_type") in ("display_data", "execute_result"):
                data = output.get("data", {})
                for mime, value in list(data.items()):
                    if isinstance(value, str) and len(value) > self.max_chars:
                        if mime.startswith("image/"):
                            del data[mime]
                            data.setdefault("text/plain", f"[image dropped: {len(value):,} bytes]")
                        else:
                            data[mime] = self._cut(value)
        return cell, resources


_NBGRADER_FILES = {"timestamp.txt", "submission_secret.txt"}


def clean_feedback_folder(assignment: str, student: str, notebooks: list[str]) -> None:
    """``GenerateFeedback.post_convert_hook``: keep only the feedback pages (``*.html``) and
    nbgrader's own ``timestamp.txt`` and ``submission_secret.txt`` (``release_feedback`` reads
    them) in ``feedback/<student>/<assignment>/``.

    nbgrader copies every other file of the graded folder there, a folder instructors hand out:
    the reference outputs in ``ref/``, and in a kernel without the sandbox any file the graded
    code wrote next to the notebook."""
    for notebook in notebooks:
        # nbgrader passes its patterns ("*" for every student): the notebook path says who
        graded = Path(notebook).resolve().parent  # <root>/autograded/<student>/<assignment>
        folder = layout.feedback_dir(graded.parent.name, graded.name, root=graded.parents[2])
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.is_symlink() or (entry.suffix != ".html" and entry.name not in _NBGRADER_FILES):
                entry.unlink()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_HIDDEN_BLOCK = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.DOTALL)
REDACTED = "[line of a hidden test removed]"
#: What replaces the output of a cell that ran after hidden tests (not a test cell).
AFTER_HIDDEN = ("[output not shown in the feedback: this cell ran after hidden tests, so what it shows "
                "could come from them]")
#: Exception names shown as they are; any other name is a class the submission could have made
#: up to carry text, and is shown as "Exception".
_KNOWN_EXCEPTIONS = frozenset(
    [name for name, value in vars(__import__("builtins")).items()
     if isinstance(value, type) and issubclass(value, BaseException)]
    + ["AnswerError", "CellTimeoutError", "DeadKernelError", "LinAlgError", "OutOfMemoryError"])
#: Type names that a course message may show ("returned a str; an int was expected").
_KNOWN_TYPES = re.compile(r"^(?:\w+|numpy\.\w+|torch\.\w+|pandas\.core\.frame\.DataFrame|"
                          r"pandas\.core\.series\.Series|fractions\.Fraction|collections\.\w+)$")
_FRAME = re.compile(r"(?:Cell In\s*\[(\d+)\]|Input In\s*\[(\d+)\]),\s*line (\d+)|File ([^\s,:]+)(?::\d+|, line \d+)")
_LONG_NUMBER = re.compile(r"-?\d[\d,._]{24,}")
MAX_MESSAGE = 1500


def _known_exception(name: str) -> str:
    return name if name in _KNOWN_EXCEPTIONS else "Exception"


def _scrub_course_message(text: str) -> str:
    """An AnswerError's text less what the graded code could have put into it: the message of an
    exception it raised, the repr of a value it returned, a class name it made up, long numbers."""
    text = _ANSI.sub("", text)
    text = re.sub(r" raised (\w+): .*?; expected (\w+) \(",
                  lambda m: f" raised {_known_exception(m.group(1))}; expected {m.group(2)} (", text,
                  flags=re.DOTALL)
    text = re.sub(r" returned .*?; expected it to raise ", " returned a value; expected it to raise ", text,
                  flags=re.DOTALL)
    text = re.sub(r" returned (a|an) ([\w.<>]+);",
                  lambda m: m.group(0) if _KNOWN_TYPES.match(m.group(2))
                  else " returned an object of a class defined in the answer;", text)
    text = _LONG_NUMBER.sub(lambda m: f"[a {len(m.group(0))}-character number]", text)
    lines = text.splitlines()[:20]
    text = "\n".join(lines)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + " [...]"


def _visible_lines(source: str) -> list[str]:
    return source.split("### BEGIN HIDDEN TESTS", 1)[0].splitlines()


def _failure_only(cell: Any) -> list[Any]:
    """The outputs a test cell keeps in the feedback: none if it passed; else one error output
    with the course's message (an AnswerError raised by the course's checks from the test cell
    itself) or only the exception's type and the visible test line that failed."""
    import nbformat

    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if not errors:
        return []
    error = errors[-1]
    frames = _FRAME.findall(_ANSI.sub("", "\n".join(error.get("traceback", []))))
    own = str(cell.get("execution_count"))
    cell_lines = [int(line) for a, b, line, _ in frames if (a or b) == own and line]
    foreign = [f for f in frames if ((f[0] or f[1]) and (f[0] or f[1]) != own)
               or (f[3] and "/course_lib/" not in f[3])]
    ename = _known_exception(str(error.get("ename", "")))
    if ename == "AnswerError" and cell_lines and not foreign:
        message = _scrub_course_message(str(error.get("evalue", "")))
        return [nbformat.v4.new_output("error", ename="AnswerError", evalue=message,
                                       traceback=[f"AnswerError: {message}"])]
    visible = _visible_lines(cell.source)
    where = "in the hidden tests"
    if cell_lines and 1 <= cell_lines[0] <= len(visible):
        where = f"at line {cell_lines[0]} of the test: {visible[cell_lines[0] - 1].strip()}"
    text = f"{ename} {where} (the details are not shown in the feedback)"
    return [nbformat.v4.new_output("error", ename=ename, evalue=where, traceback=[text])]


class StripHiddenTestOutput(Preprocessor):
    """Feedback preprocessor: nothing the graded code printed during or after hidden tests.

    Graded code can find the source of the test that calls it (frames, ``linecache``,
    ``inspect``) and print it, encoded as it likes, or keep it and print it in a later cell.
    So, in notebook (= execution) order:

    * a test cell with hidden tests, and every test cell after the first one, keeps only its
      failure: the course's AnswerError message (raised by the course's checks from the test
      cell itself; what the graded code could have put into it, such as the message of its own
      exception or the repr of a returned value, is removed), or for any other error only the
      exception's type (a name Python or the course defines) and the line of the visible test
      that failed;
    * every other code cell after the first hidden tests loses its outputs (:data:`AFTER_HIDDEN`);
    * in the cells before, output lines that quote a hidden test verbatim are replaced by
      :data:`REDACTED` (an unsandboxed kernel could read the notebook).

    Run this *before* ClearHiddenTests (it reads the hidden blocks from the sources). Lines
    shorter than ``min_chars`` (``else:``, ``)``) are not treated as quotes."""

    min_chars = 12
    #: nbconvert runs a Preprocessor only when enabled (its default is False)
    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        import nbformat

        from tools import verdict_step

        hidden: set[str] = set()
        for cell in nb.cells:
            if cell.cell_type == "code":
                for block in _HIDDEN_BLOCK.findall(cell.source):
                    hidden.update(line.strip() for line in block.splitlines()
                                  if len(line.strip()) >= self.min_chars)
        for cell in nb.cells:  # the verdict's messages come back from its record only
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.get("outputs", []) if o.get("ename") != verdict_step.ENAME]
        if not hidden and not any("### BEGIN HIDDEN TESTS" in c.source for c in nb.cells):
            _show_verdict_failures(nb, resources)
            return nb, resources
        hidden.update({"### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"})  # tracebacks show them as context

        def clean(text: str) -> str:
            lines = text.split("\n")
            out = []
            for line in lines:
                plain = _ANSI.sub("", line)
                if any(h in plain for h in hidden):
                    out.append(REDACTED)
                else:
                    out.append(line)
            return "\n".join(out)

        after_hidden = False
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            meta = cell.metadata.get("nbgrader", {})
            has_hidden = "### BEGIN HIDDEN TESTS" in cell.source
            if has_hidden or (after_hidden and meta.get("grade") and not meta.get("solution")):
                cell.outputs = _failure_only(cell)
            elif after_hidden:
                if cell.get("outputs"):
                    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=AFTER_HIDDEN + "\n")]
            else:
                for output in cell.get("outputs", []):
                    if "text" in output:
                        output.text = clean(output.text)
                    if output.get("output_type") == "error":
                        output.traceback = [clean(t) for t in output.traceback]
                        output.evalue = clean(output.evalue)
                    for mime, value in list(output.get("data", {}).items()):
                        if mime.startswith("text/") and isinstance(value, str):
                            output.data[mime] = clean(value)
            after_hidden = after_hidden or has_hidden
        _show_verdict_failures(nb, resources)
        return nb, resources


#: Longest part of the verdict's message a feedback page shows (the student's code chose some of
#: it, e.g. the text of its own exception, and saw the inputs of the calls made to it).
VERDICT_MESSAGE_CHARS = 300
_NAME_ERROR = re.compile(r"name '\w+' is not defined")


def verdict_feedback(message: str) -> str:
    """What a feedback page shows of the verdict's message for a failed test: the course's own
    check messages (scrubbed of what the graded code chose, as for the kernel's), the grader's
    own reasons (the code stopped answering, timed out, was not run), and for any other
    exception its type only: its text came from the graded code."""
    head, sep, rest = message.partition(": ")
    if not sep or not re.fullmatch(r"[A-Za-z_]\w*", head):
        text = message  # the grader's own words
    elif head == "AnswerError":
        text = _scrub_course_message(rest)
    elif head == "NameError" and _NAME_ERROR.fullmatch(rest.strip()):
        text = f"NameError: {rest.strip()}"
    else:
        text = f"{_known_exception(head)} raised while the grader's tests called your code (details not shown)"
    text = _ANSI.sub("", text)
    return text if len(text) <= VERDICT_MESSAGE_CHARS else text[:VERDICT_MESSAGE_CHARS] + " [...]"


def _show_verdict_failures(nb: Any, resources: Any) -> None:
    """Each test cell the verdict failed (tools/verdict_step.py) shows the verdict's message
    first, from the record nbgrader's process wrote into the notebook's metadata (the student's
    kernel could print anything, never that record)."""
    import nbformat

    from tools import verdict_step

    record = verdict_step.stored_verdict(nb) or {}
    tests = record.get("tests", {})
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        result = tests.get(meta.get("grade_id"))
        if result is None:
            if record.get("error"):
                result = {"passed": False, "message": record["error"], "where": ""}
            else:
                continue
        if result.get("passed"):
            continue
        text = verdict_feedback(str(result.get("message", "")))
        part = "in the hidden tests" if result.get("where") == "hidden" else "when the grader ran this test"
        cell.outputs.insert(0, nbformat.v4.new_output(
            "error", ename=verdict_step.ENAME, evalue=text,
            traceback=[f"Failed {part} (run apart from your code): {text}"]))


def _name(p: Any) -> str:
    return p if isinstance(p, str) else f"{p.__module__}.{p.__name__}"


def feedback_preprocessors(current: list[Any]) -> list[Any]:
    """``GenerateFeedback.preprocessors`` with StripHiddenTestOutput (once) before ClearHiddenTests,
    and the late note (``tools.late_feedback.LateNote``, once) last."""
    from tools.late_feedback import LateNote

    out = [p for p in current if not _name(p).endswith(("StripHiddenTestOutput", "LateNote"))]
    names = [_name(p) for p in out]
    index = next((i for i, n in enumerate(names) if n.endswith("ClearHiddenTests")), len(out))
    return out[:index] + [StripHiddenTestOutput] + out[index:] + [LateNote]
