"""Sphinx configuration of the course site (built by ``python -m tools.site``).

The site is plain Sphinx + MyST-NB + sphinx-book-theme, chosen because it builds fully
offline (Jupyter Book 2 fetches its theme from the internet at build time). ``tools/site.py``
stages the notebooks (already executed, hidden tests removed) next to a copy of this folder
and runs Sphinx on the staged copy with ``-c docs``; this file is never run from ``docs/``
itself. Build the student variant (release notebooks, no solutions) with the ``student`` tag.
"""

from __future__ import annotations

STUDENT = "student" in tags  # noqa: F821  (``tags`` is injected by Sphinx)

project = "KV cache in LLM inference"
author = "Course staff"
copyright = "2026, Course staff"  # noqa: A001
html_title = project + (" — student edition" if STUDENT else " — solutions")

extensions = ["myst_nb"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "**/ref/**", "README.md", "architecture.md", "screenshots",
                    "benchmarks"]

# tools/site.py executes the notebooks itself (cached, cwd = source/<lab>), so MyST-NB never does.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# Math: MathJax 3 served from the site itself (copied by tools/site.py from npm's mathjax@3;
# relative paths are relative to _static/). No CDN is reachable in many classrooms.
mathjax_path = "mathjax/tex-mml-chtml.js"
# No widget manager (require.js and @jupyter-widgets from a CDN): tools/site.py turns widget
# outputs into their text form, and a page that would fetch anything from outside stops the build.
nb_ipywidgets_js: dict = {}

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False
html_context = {"default_mode": "light"}  # avoids the theme's "Got invalid theme mode" console error
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "use_issues_button": False,
    "use_edit_page_button": False,
    "navigation_with_keys": False,
}

# Fail on nothing silently: tools/site.py --strict turns warnings into errors.
suppress_warnings = ["myst.header"]
