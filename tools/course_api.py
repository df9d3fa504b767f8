"""nbgrader's API set up for this course: configuration, gradebook, cell time limit, release.

Everything the course grades runs through nbgrader's own Python API
(``nbgrader.apps.NbGraderAPI``) in one process, so nbgrader's start-up is paid once, not once per
student and command. :func:`make_api` builds that API with the course's preprocessors
(the sandboxed kernel, the verdict, the feedback steps); :func:`release` makes ``release/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tools import layout
from tools.layout import ROOT, available_labs

#: Files of source/<lab>/ that graders need but students must not see.
REFERENCE_DIRS = ("ref",)


def _quiet() -> None:
    # nbgrader's gradebook triggers harmless SQLAlchemy autoflush warnings on every run.
    import warnings

    warnings.filterwarnings("ignore", message=".*not in session.*")


def _ensure_venv_on_path() -> None:
    # nbgrader runs `alembic` from PATH when it creates the gradebook; without the venv's
    # bin/ on PATH that fails and leaves a half-made database.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def _load_config(root: Path):  # -> traitlets Config
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    config.merge(PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config())
    return config


def gradebook_db_url(root: Path = ROOT, config=None) -> str:
    """The gradebook's SQLAlchemy URL: ``c.CourseDirectory.db_url`` of ``root/nbgrader_config.py``
    when it is set there (PostgreSQL, for grading with several workers), else SQLite
    ``root/gradebook.db``. nbgrader's own commands and the formgrader read the same setting."""
    config = _load_config(root) if config is None else config
    configured = config.CourseDirectory.get("db_url")
    return str(configured) if configured else "sqlite:///" + str(Path(root) / "gradebook.db")


def make_api(root: Path = ROOT, for_release: bool = False, timeout: int | None = None,
             sandbox: bool | None = None):  # -> NbGraderAPI
    """An NbGraderAPI configured by ``root/nbgrader_config.py``.

    ``for_release=True``: the configuration for ``generate_assignment`` (autograde's steps left
    as configured). The reference folders (``ref/``) are in ``CourseDirectory.ignore`` for
    every command: they reach neither release/ nor autograded/ (only the verdict's grader
    process reads them, from source/).

    ``sandbox``: run autograde's kernels in bwrap (tools/sandbox.py); None = the default
    (on where bwrap works, unless KVCOURSE_SANDBOX=0). Feedback always drops output lines
    that quote hidden tests.
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from tools import feedback as feedback_tool
    from tools import sandbox as sandbox_tool

    _ensure_venv_on_path()
    _quiet()
    config = _load_config(root)
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = gradebook_db_url(root, config)
    ignored = list(config.CourseDirectory.ignore)
    config.CourseDirectory.ignore = ignored + [d for d in REFERENCE_DIRS if d not in ignored]
    if not for_release:
        configured = config.Autograde.get("autograde_preprocessors")
        boxed = sandbox_tool.enabled() if sandbox is None else sandbox
        config.Autograde.autograde_preprocessors = sandbox_tool.autograde_preprocessors(
            list(configured) if configured is not None else None, sandbox=boxed)
        config.CourseVerdict.sandboxed = "on" if boxed else "off"
    # the pipeline runs the integrity check itself, for the whole batch (nbgrader_config.py's
    # hook is for `nbgrader autograde` and the formgrader)
    config.Autograde.post_convert_hook = None
    config.GenerateFeedback.preprocessors = feedback_tool.feedback_preprocessors(
        list(config.GenerateFeedback.get("preprocessors") or _default_feedback_preprocessors()))
    config.GenerateFeedback.post_convert_hook = feedback_tool.clean_feedback_folder
    if timeout is not None:
        config.Execute.timeout = timeout
    coursedir = CourseDirectory(config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)


def _default_feedback_preprocessors() -> list:
    from nbgrader.converters.generate_feedback import GenerateFeedback

    return list(GenerateFeedback.class_traits()["preprocessors"].default())


def release(root: Path = ROOT) -> list[str]:
    """Generate release/<lab>/ for every lab in source/. Raises if nbgrader fails."""
    api = make_api(root, for_release=True)
    labs = available_labs(root)
    for lab in labs:
        result = api.generate_assignment(lab, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(f"generate_assignment {lab} failed:\n{result.get('error') or result.get('log')}")
        leaked = [d for d in REFERENCE_DIRS if (layout.release_notebook(lab, root).parent / d).exists()]
        if leaked:
            raise RuntimeError(f"reference files leaked into release/{lab}: {leaked}")
    return labs


def cell_timeout(root: Path = ROOT) -> int:
    """The per-cell time limit of nbgrader's run (``c.Execute.timeout`` in nbgrader_config.py)."""
    value = _load_config(root).Execute.get("timeout", 120)
    return int(value) if isinstance(value, int | float) and value > 0 else 120
