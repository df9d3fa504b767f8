"""The solutions site loads nothing from outside the machine, whatever the notebooks output."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tools import site


def _notebook_with(outputs: list[dict]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("work()")
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    nb.cells = [cell]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_widget_and_remote_outputs_fall_back_to_text() -> None:
    progress = {"output_type": "display_data", "metadata": {},
                "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "abc"},
                         "text/plain": "100%|##########| 20/20"}}
    tracker = {"output_type": "display_data", "metadata": {},
               "data": {"text/html": '<img src="https://tracker.example.org/p.gif">',
                        "text/plain": "<IPython.core.display.HTML object>"}}
    script_only = {"output_type": "display_data", "metadata": {},
                   "data": {"application/javascript": 'require(["https://unpkg.com/x.js"])'}}
    local = {"output_type": "display_data", "metadata": {},
             "data": {"text/html": '<b>fine</b> <a href="https://example.org">a link</a>'}}
    page = site.offline_page(_notebook_with([progress, tracker, script_only, local]))
    out = page.cells[0].outputs
    assert out[0].data == {"text/plain": "100%|##########| 20/20"}
    assert out[1].data == {"text/plain": "<IPython.core.display.HTML object>"}
    assert list(out[2].data) == ["text/plain"] and "not shown on the site" in out[2].data["text/plain"]
    assert "text/html" in out[3].data  # a link one clicks is not a request
    assert "widgets" not in page.metadata


@pytest.mark.parametrize("text", [
    '<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js"></script>',
    "<link rel='stylesheet' href='//fonts.example.com/a.css'>",
    '<img alt="x" src=http://example.org/a.png>',
    "<style>body { background: url( 'https://example.org/bg.png' ) }</style>",
    '<script>require(["https://unpkg.com/@jupyter-widgets/html-manager@^1.0.1/dist/embed-amd.js"])</script>',
    "<iframe src='https://www.youtube.com/embed/x'></iframe>",
])
def test_remote_fetches_are_found(text: str) -> None:
    assert site.remote_fetches(text)


@pytest.mark.parametrize("text", [
    '<script src="_static/mathjax/tex-mml-chtml.js"></script>',
    '<a href="https://huggingface.co/meta-llama">source</a>',
    '<img src="http://127.0.0.1:8000/a.png"> <link href="http://localhost/x.css">',
])
def test_local_files_and_plain_links_are_not_fetches(text: str) -> None:
    assert site.remote_fetches(text) == []


def test_a_built_page_that_would_fetch_from_outside_is_found(tmp_path: Path) -> None:
    (tmp_path / "lab.html").write_text('<html><script src="https://cdn.example.org/r.js"></script></html>')
    (tmp_path / "ok.html").write_text('<html><script src="_static/r.js"></script></html>')
    assert site.external_requests(tmp_path) == {"lab.html": ["https://cdn.example.org/r.js"]}


@pytest.mark.slow
@pytest.mark.system
def test_the_student_site_loads_nothing_from_outside() -> None:
    index = site.build(student=True, strict=True, quiet=True)  # the build itself refuses otherwise
    assert site.external_requests(index.parent) == {}
