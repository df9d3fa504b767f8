"""nbgrader_config.py's settings for the formgrader: the exchange of a course on one machine,
a JupyterHub's exchange kept, and the local MathJax for the grading page only.

tests/test_formgrader_browser.py drives the formgrader itself; these check the settings fast.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from nbconvert.exporters import HTMLExporter
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from tools import formgrader
from tools.layout import ROOT

HUB_CONFIG = ROOT / "tools" / "jupyterhub" / "nbgrader_config.py"


def _course_config(course: Path) -> Config:
    """The course's nbgrader_config.py as nbgrader loads it, in the course folder ``course``."""
    course.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    return PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()


def test_a_course_on_one_machine_gets_an_exchange_in_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "no-config"))
    monkeypatch.setenv("JUPYTER_NO_CONFIG", "1")  # only JUPYTER_CONFIG_DIR: no machine-wide files
    config = _course_config(tmp_path / "course")
    assert config.Exchange.root == str(tmp_path / "course" / "exchange")
    assert (tmp_path / "course" / "exchange").is_dir()


def test_a_jupyterhub_exchange_set_machine_wide_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = tmp_path / "etc-jupyter"
    machine.mkdir()
    shutil.copy(HUB_CONFIG, machine / "nbgrader_config.py")
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(machine))
    monkeypatch.setenv("NBGRADER_EXCHANGE_ROOT", str(tmp_path / "shared-exchange"))
    config = _course_config(tmp_path / "course")
    assert "root" not in config.Exchange, config.Exchange  # read after the hub's file: must not replace it
    assert not (tmp_path / "course" / "exchange").exists()
    assert formgrader.local_exchange(tmp_path / "course", [str(machine)]) is None
    assert formgrader.local_exchange(tmp_path / "course", [str(tmp_path / "course")]) == \
        str(tmp_path / "course" / "exchange")  # the course's own file does not count


def _mathjax_macro(config: Config, template: str) -> tuple[str, str]:
    """(file, output) of the ``mathjax()`` macro that nbgrader's ``template`` would call."""
    config = Config(config)
    config.HTMLExporter.template_name = template  # as nbgrader sets it for its pages
    if "extra_template_basedirs" not in config.HTMLExporter:  # nbgrader's own, if none is configured
        config.HTMLExporter.extra_template_basedirs = formgrader.template_dirs()[:1]
    exporter = HTMLExporter(config=config)
    found = exporter.environment.get_template("mathjax.html.j2")
    return str(found.filename), str(found.module.mathjax())


def test_the_grading_page_loads_the_local_mathjax_and_feedback_pages_do_not_change(tmp_path: Path) -> None:
    config = _course_config(tmp_path / "course")
    where, html = _mathjax_macro(config, "formgrade")
    assert Path(where) == formgrader.TEMPLATES / "formgrade" / "mathjax.html.j2"
    local = '<script src="../../../static/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe">'
    assert local in html and "MathJax.Hub.Config" in html, html
    assert html.index("window.MathJax ||") > html.index(local), "the CDN only when no local copy loaded"

    where, html = _mathjax_macro(config, "feedback")
    assert Path(where).parent.name == "base" and Path(where).parent.parent.name == "templates", where
    assert "../../../static/mathjax" not in html and "cdnjs.cloudflare.com" in html
