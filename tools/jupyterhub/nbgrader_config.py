"""nbgrader settings shared by the instructor and every student on a JupyterHub machine.

Install as /etc/jupyter/nbgrader_config.py (read by every user's nbgrader), next to the course's
own nbgrader_config.py in the instructor's course folder. The exchange is nbgrader's built-in
one: a folder on a filesystem every user's server can reach, one Unix user per student.
tests/test_exchange.py runs release -> fetch -> submit -> collect -> autograde with this file
(the exchange folder is then a temporary one, given by NBGRADER_EXCHANGE_ROOT).
"""

import os

c = get_config()  # noqa: F821 - provided by nbgrader

# Must equal CourseDirectory.course_id in the course's nbgrader_config.py.
c.CourseDirectory.course_id = "kv-cache-course"

# The shared exchange folder. Create it once as root: mkdir -p /srv/nbgrader/exchange &&
# chmod ugo+rw /srv/nbgrader/exchange (release_assignment sets the modes it needs below it).
# The course folder's nbgrader_config.py keeps it (it names its own exchange/ only when no other
# configuration sets one).
c.Exchange.root = os.environ.get("NBGRADER_EXCHANGE_ROOT", "/srv/nbgrader/exchange")

# Students' fetched labs land in ~/<lab>/ (set True if a student takes several courses).
c.Exchange.path_includes_course = False

# Grading happens only in the course folder, whose own nbgrader_config.py (read after this file,
# so its settings win) runs student code in the grading sandbox and checks integrity afterwards.
# Anywhere else `nbgrader autograde` would run student code unconfined: refuse, before any runs.
from nbconvert.preprocessors import Preprocessor  # noqa: E402


class AutogradeOnlyInTheCourseFolder(Preprocessor):
    """Refuses to autograde outside the course folder (replaced by the course's own list there)."""

    def preprocess(self, nb, resources):
        raise RuntimeError("autograde from the course folder (its nbgrader_config.py sandboxes student code "
                           "and runs the integrity check): cd there and run `make autograde`")


c.Autograde.autograde_preprocessors = [AutogradeOnlyInTheCourseFolder]
