"""nbgrader configuration for the KV-cache course.

Run nbgrader from this folder (the Makefile and tools/pipeline.py do).
Facts behind these settings: ../shared/facts/NBGRADER.md.
"""

import os

c = get_config()  # noqa: F821 - provided by nbgrader

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "kv-cache-course"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db")

# Reference files (source/<lab>/ref/) must reach autograded/ but not release/. nbgrader uses
# the same ignore list for both, so ref/ is added to it only on the generate_assignment call
# (tools/pipeline.py), never here.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Per-cell time limit while grading (seconds). Lab notebooks shrink their ungraded benchmarks
# while autograding, so no correct cell comes near this.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True

# nbgrader scores a test cell 0 if it writes anything to stderr. Warnings are not errors.
c.IgnorePattern.pattern = r"\w*Warning: "

# nbgrader's LimitOutput counts lines only; one huge line would still bloat the notebook and
# the feedback. CapOutputSize cuts each output to 100,000 characters.
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "course_lib.nbgrader_ext.CapOutputSize",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Feedback must not show the hidden tests.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "nbgrader.preprocessors.ClearHiddenTests",
]
