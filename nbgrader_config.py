"""nbgrader configuration for the KV-cache course.

Run nbgrader from this folder (the Makefile and tools/pipeline.py do).
Each setting says why it is there (nbgrader 0.9.6 behaviour measured on the course machines).
"""

import os
import sys

c = get_config()  # noqa: F821 - provided by nbgrader

# `tools` is the course repository's package (the sandbox, the integrity check): nbgrader
# started here, or the formgrader, imports it by the names below. It is found next to this file
# or, for a copy of the course folder elsewhere, next to the installed course_lib.
def _course_repository():
    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(os.path.join(here, "tools")):
        return here
    try:
        import course_lib
    except ImportError:
        return None
    repo = os.path.dirname(os.path.dirname(os.path.abspath(course_lib.__file__)))
    return repo if os.path.isfile(os.path.join(repo, "tools", "sandbox.py")) else None


_repo = _course_repository()
if _repo is not None and _repo not in sys.path:
    sys.path.insert(0, _repo)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "kv-cache-course"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db")

# Reference files (source/<lab>/ref/, the expected outputs of hidden tests) reach neither
# release/ nor autograded/: only the verdict's grader process reads them, from source/.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "ref"]

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Per-cell time limit while grading (seconds). Lab notebooks shrink their ungraded benchmarks
# while autograding, so no correct cell comes near this.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True

# nbconvert checks a whole notebook against the nbformat schema after each of the ~17 steps of an
# autograde (~40 ms of CPU per submission); once after the last step of each pass is enough: a
# notebook broken by any step still fails, before it is written (and before its kernel runs).
c.Exporter.optimistic_validation = True

# nbgrader scores a test cell 0 if it writes anything to stderr. Warnings are not errors.
c.IgnorePattern.pattern = r"\w*Warning: "

# nbgrader's LimitOutput counts lines only; one huge line would still bloat the notebook and
# the feedback. CapOutputSize cuts each output to 100,000 characters.
#
# One grading path: `make autograde` (tools/pipeline.py), `nbgrader autograde` on the command
# line and the formgrader's Autograde button all grade in two steps:
# - CourseExecute runs the student's notebook in the grading sandbox (bwrap where it works, else
#   a warning; KVCOURSE_SANDBOX=1 makes that an error), each test cell's *visible* part only;
# - CourseVerdict (tools/verdict_step.py) runs every test, hidden ones included, in a grader
#   process apart from the student's code, and puts its failures first into the test cells, so
#   SaveAutoGrades scores a test only if both passed it;
# StartVerdict starts the verdict before the kernel, so that the two run side by side (each in
# processes of its own; CourseVerdict waits for it);
# then the integrity check (the post-convert hook; tools/holds.py; make autograde runs it itself, for a whole
# batch at once). A submission whose integrity check cannot run has its points held.
# SaveAutoGrades marks every cell graded by hand as "needs manual grading" again on each re-grade;
# ReadHandGrades (before it) and KeepHandGrades (after it) keep a hand grade while the answer it
# graded is unchanged and drop it when the answer changed (tools/hand_grades.py; the answer's
# fingerprint is kept in the gradebook, which outlives autograded/).
c.Autograde.autograde_preprocessors = [
    "tools.verdict_step.StartVerdict",
    "tools.sandbox.CourseExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "tools.feedback.CapOutputSize",
    "tools.verdict_step.CourseVerdict",
    "tools.hand_grades.ReadHandGrades",
    "nbgrader.preprocessors.SaveAutoGrades",
    "tools.hand_grades.KeepHandGrades",
    "tools.late.CourseLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.post_convert_hook = "tools.holds.integrity_hook"

# Late penalties (tools/late.py): due dates, extensions and the policy live in deadlines.toml;
# `make deadlines` puts the due dates and extensions into the gradebook, where nbgrader computes
# each submission's lateness from its timestamp.txt. CourseLatePenalties is nbgrader's
# AssignLatePenalties that first writes the student's extension into the submission; nbgrader
# then asks the plugin for the penalty. No deadlines.toml: no penalty.
c.AssignLatePenalties.plugin_class = "tools.late.CoursePenaltyPlugin"

# Feedback must not show the hidden tests, nor anything graded code printed while or after
# they ran (tools/feedback.py: StripHiddenTestOutput), nor files of the graded folder such as the
# reference outputs in ref/ (clean_feedback_folder keeps only the HTML pages).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "tools.feedback.StripHiddenTestOutput",
    "nbgrader.preprocessors.ClearHiddenTests",
    "tools.late_feedback.LateNote",  # a late submission's page: due, submitted, penalty, final score
]
c.GenerateFeedback.post_convert_hook = "tools.feedback.clean_feedback_folder"

# `nbgrader export` writes grades.csv by default, which would overwrite the course's own grades
# file (`make report`: autograded, hand-graded and total points, named mistakes, integrity).
# nbgrader's export goes to its own file instead; `nbgrader export --to FILE` still chooses.
c.ExportPlugin.to = "nbgrader_export.csv"


# nbgrader's exchange: release_assignment, fetch, submit and collect, the formgrader's Release and
# Collect buttons. On a JupyterHub the machine-wide nbgrader_config.py names the shared exchange
# (tools/jupyterhub/nbgrader_config.py; README "Running the course on JupyterHub"), and it stays.
# A course on one machine has none: nbgrader's default, /usr/local/share/nbgrader/exchange, does
# not exist (making it needs root), and the formgrader then shows an exchange warning and logs
# "Unwritable directory" for every page. The course folder's exchange/ (made here, ignored by git)
# serves instead (tools/formgrader.py: local_exchange).
#
# The formgrader's grading page loads MathJax 2 from a CDN (nbgrader's formgrade template calls
# nbconvert's mathjax() macro without a URL: HTMLExporter.mathjax_url does not reach it), so
# offline the lab text and the written answers showed raw LaTeX. The course's template folder
# comes after nbgrader's own; its formgrade/mathjax.html.j2 loads the local MathJax that
# `python -m tools.formgrader` serves, and the CDN where none is served. Only the formgrade
# template looks there: feedback pages are unchanged.
if _repo is not None:
    from tools.formgrader import local_exchange, template_dirs

    _exchange = local_exchange(c.CourseDirectory.root)
    if _exchange is not None:
        c.Exchange.root = _exchange
    c.HTMLExporter.extra_template_basedirs = template_dirs()
