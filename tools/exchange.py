"""nbgrader's built-in exchange, end to end: release -> fetch -> submit -> collect -> autograde.

This is the multi-user path of the course (JupyterHub on one machine, or several machines with
a shared exchange folder): the instructor releases a lab into the exchange folder, each
student fetches it into their home, fills it in and submits it, the instructor collects the
submissions into ``submitted/`` and autogrades them. Every step is the ``nbgrader`` command
line a JupyterHub user would run (or the lab extension runs for them); the settings are
``tools/jupyterhub/nbgrader_config.py``, the file to install as /etc/jupyter/nbgrader_config.py.

    python -m tools.exchange                    # round trip in a temporary folder, prints scores

Run as root, each student is a real Unix user (created with ``useradd`` if missing) and runs
nbgrader under their own uid; otherwise every step runs as the current user and students are
told apart with ``--student``.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import nbformat

from tools import layout
from tools.samples import ROOT, fill, submission_cells

#: The exchange settings tested here and installed on a JupyterHub machine.
EXCHANGE_CONFIG = ROOT / "tools" / "jupyterhub" / "nbgrader_config.py"
DEFAULT_STUDENTS = {"kvstudent1": "solution", "kvstudent2": "mutant:weights_not_subtracted"}


def _student_python() -> list[str]:
    """An interpreter every Unix user can run, with the venv's packages on its path.

    The venv's python may live under /root (mode 700); Debian's python3.11 is the same ABI."""
    here = Path(sys.executable).resolve()
    if all(os.stat(p).st_mode & 0o001 for p in [here, *here.parents]):  # others may traverse and run it
        return [str(here)]
    system = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin")
    if system is None:
        raise RuntimeError("no interpreter that other users can run (install Debian's python3)")
    return [system]


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
        return pwd.getpwnam(name)


def _chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, user.pw_uid, user.pw_gid)


class RoundTrip:
    """One instructor course and a few students sharing an exchange folder under ``workdir``."""

    def __init__(self, workdir: Path, lab: str = "lab00_cache_sizing", multi_user: bool | None = None) -> None:
        self.workdir = Path(workdir)
        self.lab = lab
        self.multi_user = (os.geteuid() == 0) if multi_user is None else multi_user
        if self.multi_user and os.geteuid() != 0:
            raise ValueError("multi_user=True needs root (to create users and run as them)")
        self.course = self.workdir / "course"
        self.exchange = self.workdir / "exchange"
        self.config_dir = self.workdir / "jupyter-config"
        self.log: list[str] = []

    def _env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "NBGRADER"))}
        env.update(HOME=str(home), JUPYTER_CONFIG_DIR=str(self.config_dir),
                   NBGRADER_EXCHANGE_ROOT=str(self.exchange),
                   PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""))
        return env

    def nbgrader(self, args: list[str], cwd: Path, user: str | None = None) -> subprocess.CompletedProcess:
        """Run ``nbgrader ARGS`` in ``cwd``, as Unix user ``user`` when multi-user."""
        env = self._env(cwd)
        if user is not None and self.multi_user:
            env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
            env["USER"] = env["LOGNAME"] = user
            # runuser resets HOME to the passwd entry; the student's home here is ``cwd``
            cmd = ["runuser", "-u", user, "--", "env", f"HOME={cwd}", *_student_python(), "-m", "nbgrader", *args]
        else:
            cmd = [sys.executable, "-m", "nbgrader", *args]
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        self.log.append(f"$ {' '.join(cmd[-len(args) - 2:])}  (as {user or 'instructor'}) -> {result.returncode}")
        if result.returncode != 0:
            raise RuntimeError(f"nbgrader {' '.join(args)} as {user or 'instructor'} failed:\n"
                               f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def setup(self) -> None:
        """Instructor's course folder (source + config), release/ generated, exchange config."""
        from tools.pipeline import release

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        if self.multi_user:
            closed = [p for p in [self.workdir, *self.workdir.parents] if not os.stat(p).st_mode & 0o001]
            if closed:
                raise ValueError(f"workdir: students cannot reach {self.workdir}; {closed[0]} is closed to others")
        shutil.copytree(ROOT / layout.SOURCE / self.lab, self.course / layout.SOURCE / self.lab)
        shutil.copy(ROOT / "nbgrader_config.py", self.course / "nbgrader_config.py")
        self.config_dir.mkdir()
        shutil.copy(EXCHANGE_CONFIG, self.config_dir / "nbgrader_config.py")
        release(self.course)

    def release(self) -> None:
        """Instructor: put release/<lab> into the exchange's outbound folder."""
        self.nbgrader(["release_assignment", self.lab], cwd=self.course)

    def student_turn(self, student: str, variant: str) -> Path:
        """A student fetches the lab, fills it in (``variant`` of tools.samples) and submits it."""
        self.fetch(student)
        return self.submit(student, variant)

    def home(self, student: str) -> Path:
        """The student's home folder (their lab is fetched into ``<home>/<lab>/``)."""
        return self.workdir / "home" / student

    def fetch(self, student: str) -> Path:
        """A student (a new Unix user when multi-user) fetches the lab; returns its notebook."""
        home = self.home(student)
        home.mkdir(parents=True)
        user = None
        if self.multi_user:
            user = _ensure_user(student)
            os.chown(home, user.pw_uid, user.pw_gid)
        self.nbgrader(["fetch_assignment", self.lab], cwd=home, user=student)
        notebook = home / self.lab / f"{self.lab}.ipynb"
        if not notebook.exists():
            raise RuntimeError(f"fetch_assignment did not create {notebook}")
        return notebook

    def submit(self, student: str, variant: str) -> Path:
        """A student who fetched the lab fills it in (``variant`` of tools.samples; "untouched"
        leaves the notebook as it is) and submits it, again for a resubmission."""
        home = self.home(student)
        notebook = home / self.lab / f"{self.lab}.ipynb"
        cells = submission_cells(ROOT, self.lab, variant)
        if cells is not None:
            nbformat.write(fill(nbformat.read(notebook, as_version=4), cells), notebook)
        if self.multi_user:
            _chown_tree(home / self.lab, pwd.getpwnam(student))
        args = ["submit", self.lab] + ([] if self.multi_user else [f"--student={student}"])
        self.nbgrader(args, cwd=home, user=student)
        return notebook

    def fetch_feedback(self, student: str) -> dict[str, Path]:
        """A student fetches the feedback released so far: submission timestamp -> feedback page."""
        home = self.home(student)
        self.nbgrader(["fetch_feedback", self.lab], cwd=home, user=student)
        pages = (home / self.lab / "feedback").glob(f"*/{self.lab}.html")
        return {page.parent.name: page for page in sorted(pages)}

    def collect_and_grade(self) -> dict[str, float]:
        """Instructor: collect into submitted/, autograde, and read total autograded scores."""
        from nbgrader.api import Gradebook

        self.nbgrader(["collect", self.lab], cwd=self.course)
        self.nbgrader(["autograde", self.lab], cwd=self.course)
        scores = {}
        with Gradebook("sqlite:///" + str(self.course / "gradebook.db")) as gb:
            for sub in gb.assignment_submissions(self.lab):
                scores[sub.student_id] = float(sub.score)
        return scores


def round_trip(workdir: Path, lab: str = "lab00_cache_sizing", students: dict[str, str] | None = None,
               multi_user: bool | None = None) -> tuple[dict[str, float], RoundTrip]:
    """Release, fetch and submit for each student (name -> variant), collect, autograde."""
    trip = RoundTrip(workdir, lab, multi_user)
    trip.setup()
    trip.release()
    for student, variant in (students or DEFAULT_STUDENTS).items():
        trip.student_turn(student, variant)
    return trip.collect_and_grade(), trip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default="lab00_cache_sizing")
    parser.add_argument("--single-user", action="store_true", help="do not create Unix users")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="kvcourse-exchange-"))
    workdir.chmod(0o755)  # students (other Unix users) must reach their homes and the exchange
    try:
        scores, trip = round_trip(workdir / "trip", args.lab, multi_user=False if args.single_user else None)
        print("\n".join(trip.log))
        print(json.dumps(scores, indent=1))
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
