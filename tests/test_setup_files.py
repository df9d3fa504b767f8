"""Set-up files agree: one source of truth for dependencies, CI calls the README's command."""

from __future__ import annotations

import re
import subprocess
import sys

from tools.samples import ROOT


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def test_requirements_are_pinned():
    reqs = _requirements()
    assert "torch==2.13.0" in reqs, "torch must be pinned to the CPU build on the course machines"
    unpinned = [r for r in reqs if "==" not in r]
    assert not unpinned, f"unpinned requirements: {unpinned}"


def test_environment_yml_reads_requirements():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*-\s*-r requirements\.txt\s*$", text, re.M), "environment.yml must install requirements.txt"
    # and lists no package of its own besides python and pip, so the two cannot drift apart
    deps = re.findall(r"^\s{2}-\s*([A-Za-z0-9_.-]+)", text.split("dependencies:", 1)[1], re.M)
    assert set(deps) <= {"python", "pip"}, deps
    assert "python=3.11" in text


def test_installed_versions_match_requirements():
    from importlib.metadata import version

    for req in _requirements():
        name, pinned = req.split("==")
        assert version(name).split("+")[0] == pinned, f"{name}: installed {version(name)}, pinned {pinned}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test\s*$", ci, re.M)


def test_notebooks_are_built_from_labs():
    result = subprocess.run([sys.executable, "-m", "tools.nbbuild", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ruff_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
