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
c.Exchange.root = os.environ.get("NBGRADER_EXCHANGE_ROOT", "/srv/nbgrader/exchange")

# Students' fetched labs land in ~/<lab>/ (set True if a student takes several courses).
c.Exchange.path_includes_course = False
