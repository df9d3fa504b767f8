"""nbgrader's formgrader offline: JupyterLab on the course folder, serving a local MathJax.

    python -m tools.formgrader                  # then Nbgrader > Formgrader in JupyterLab
    python -m tools.formgrader --root DIR       # another course folder
    python -m tools.formgrader -- --port 9999   # anything after -- goes to `jupyter lab`

nbgrader 0.9.6's grading page (its ``formgrade`` template) typesets the lab text and the
students' written answers with MathJax 2 from a CDN: the template calls nbconvert's ``mathjax()``
macro without a URL, so neither ``HTMLExporter.mathjax_url`` nor the server's ``mathjax_url``
setting reaches it, and offline the page shows raw LaTeX (and its script stops at
``MathJax is not defined``). The course changes two things, both through supported settings:

- **the URL**: ``nbgrader_config.py`` adds :data:`TEMPLATES` to nbconvert's template search path
  (``HTMLExporter.extra_template_basedirs``, after nbgrader's own). Its
  ``formgrade/mathjax.html.j2`` is found before nbconvert's macro by the formgrade template only
  (feedback pages are unchanged): it loads MathJax from the server's ``static/mathjax/``, and
  from nbconvert's CDN where that is not served (a JupyterLab started otherwise, a JupyterHub);
- **the files**: this command starts JupyterLab with ``ServerApp.extra_static_paths`` set to the
  local MathJax 2 (npm's ``mathjax@2``, in ``.cache/mathjax2/``; installed by
  ``tools/install_system_deps.sh`` if missing). MathJax 2, not the site's MathJax 3: the
  formgrader's own script calls ``MathJax.Hub``, which MathJax 3 does not have.

The venv's ``bin/`` goes first on PATH, as ``make`` does: the formgrader's Autograde button
may create the gradebook, which runs ``alembic`` from PATH.

**The exchange** (:func:`local_exchange`, used by ``nbgrader_config.py``): a course on one
machine gets ``exchange/`` in its folder, so that the formgrader neither warns that the exchange
is missing nor logs "Unwritable directory" for every page; a JupyterHub's machine-wide exchange
(tools/jupyterhub/nbgrader_config.py) is left as it is.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from tools.layout import ROOT

#: npm's install folder of MathJax 2; served as the server's static files, so that
#: ``<server>/static/mathjax/MathJax.js`` is the MathJax that the grading page loads.
MATHJAX2_PACKAGES = ROOT / ".cache" / "mathjax2" / "node_modules"
MATHJAX2_ENTRY = MATHJAX2_PACKAGES / "mathjax" / "MathJax.js"

#: The course's nbconvert templates for the formgrader (``formgrade/mathjax.html.j2``).
TEMPLATES = ROOT / "tools" / "formgrader_templates"


def template_dirs() -> list[str]:
    """``HTMLExporter.extra_template_basedirs`` for nbgrader: its own template folder (what
    nbgrader uses when the configuration names none), then the course's :data:`TEMPLATES`."""
    import nbgrader

    nbgrader_templates = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates"
    return [str(nbgrader_templates), str(TEMPLATES)]


def local_exchange(course_root: str | Path, config_dirs: list[str] | None = None) -> str | None:
    """The exchange folder of a course on one machine: ``<course_root>/exchange``, made if missing.

    None when another nbgrader configuration in ``config_dirs`` (default: the Jupyter
    configuration folders nbgrader reads, the user's and the machine's) sets ``Exchange.root``,
    as a JupyterHub's does (tools/jupyterhub/nbgrader_config.py), and when the folder cannot be
    made (a read-only course folder): nbgrader's own setting stands then.
    """
    from jupyter_core.paths import jupyter_config_path

    folders = jupyter_config_path() if config_dirs is None else config_dirs
    if any(_sets_exchange_root(Path(folder), Path(course_root)) for folder in folders):
        return None
    exchange = Path(course_root) / "exchange"
    try:
        exchange.mkdir(exist_ok=True)
    except OSError:
        return None
    return str(exchange)


def _sets_exchange_root(folder: Path, course_root: Path) -> bool:
    """True when ``folder`` (not the course folder) holds an nbgrader configuration setting
    ``Exchange.root``. A file nbgrader cannot load either (it warns about it) counts as none."""
    from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

    if not folder.is_dir() or (course_root.is_dir() and folder.samefile(course_root)):
        return False
    for loader, name in ((PyFileConfigLoader, "nbgrader_config.py"), (JSONFileConfigLoader, "nbgrader_config.json")):
        if not (folder / name).is_file():
            continue
        try:
            if "root" in loader(name, path=str(folder)).load_config().Exchange:
                return True
        except Exception:  # nbgrader skips such a file too
            continue
    return False


def ensure_mathjax2() -> Path:
    """The folder to serve (:data:`MATHJAX2_PACKAGES`); installs MathJax 2 first if it is missing."""
    if not MATHJAX2_ENTRY.exists():
        print("formgrader: MathJax 2 not found in .cache/mathjax2; running "
              "tools/install_system_deps.sh --mathjax-only", file=sys.stderr)
        subprocess.run(["bash", str(ROOT / "tools" / "install_system_deps.sh"), "--mathjax-only"],
                       check=True)
    if not MATHJAX2_ENTRY.exists():
        raise FileNotFoundError(f"{MATHJAX2_ENTRY} is missing: run `bash tools/install_system_deps.sh`")
    return MATHJAX2_PACKAGES


def server_args(mathjax_packages: Path = MATHJAX2_PACKAGES) -> list[str]:
    """The Jupyter server options that serve the local MathJax 2 at ``<server>/static/mathjax/``."""
    return [f"--ServerApp.extra_static_paths={mathjax_packages}"]


def lab_command(extra: list[str]) -> list[str]:
    """``jupyter lab`` from this interpreter's environment, serving the local MathJax."""
    return [str(Path(sys.executable).parent / "jupyter"), "lab", *server_args(), *extra]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.formgrader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the course folder (default: this repository)")
    parser.add_argument("lab_args", nargs="*", help="after --: options for `jupyter lab`")
    args = parser.parse_args(argv)
    ensure_mathjax2()
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    command = lab_command(args.lab_args)
    os.chdir(args.root)
    os.execve(command[0], command, env)
    return 0  # not reached: the process is now JupyterLab


if __name__ == "__main__":
    raise SystemExit(main())
