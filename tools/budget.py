"""Resource budget of one submission: total memory and task count of all its processes.

The grading sandbox (tools/sandbox.py) gives each submission's kernel a budget that counts
every process and thread the submission starts, together, not each process alone: three
children of 2.5 GiB each exceed a 4 GiB budget, and a fork bomb meets a ceiling on tasks.
When the budget is exceeded, every process of that submission is killed at once (within about
a second); the kernel is then dead, nbgrader reports the notebook as not graded, the reason is
kept (:func:`pop_kill_reason`) and the batch goes on with the next submission.

Three ways to enforce it, the first that works on this machine (:func:`backend`):

``cgroup2``
    A cgroup v2 per submission below the grader's own cgroup (or below ``KVCOURSE_CGROUP``, a
    folder an administrator delegated, e.g. systemd's ``Delegate=yes``): ``memory.max``,
    ``memory.swap.max = 0``, ``memory.oom.group = 1``, ``pids.max``. The controllers must be
    available there (``cgroup.controllers`` lists ``memory`` and ``pids``). If the grader's
    cgroup holds processes (the usual case in a container), they are first moved into a leaf
    ``kvcourse-host`` below it: they stay under every limit they had, and the grader's cgroup can
    then hand ``memory`` and ``pids`` down (cgroup v2 allows controllers only in cgroups without
    processes of their own).
``cgroup1``
    The same with cgroup v1's separate ``memory`` and ``pids`` hierarchies
    (``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes``, ``pids.max``), below the
    grader's own groups.
``watchdog``
    No usable cgroup (not root, no delegation): each submission's kernel runs as its own
    throw-away uid, so ``RLIMIT_NPROC`` counts that submission's tasks only; ``RLIMIT_DATA``
    caps each process; a thread of the grader sums the proportional set size (PSS) of the
    submission's process tree every 0.2 s and kills the tree when the sum passes the budget or
    the tree reaches the task limit. A fast allocation can overshoot the budget by what it
    allocates in 0.2 s before it is killed.

In every backend a submission that reaches its task limit is killed: forked children share the
kernel's ZeroMQ sockets, so a fork bomb would otherwise hang the kernel until the cell timeout.

    python -m tools.budget      # which backend this machine gets

Why one module of this size: the three backends (cgroup v2, cgroup v1, a watchdog) answer the
same two questions (start a budget, end it) and share the limits and the kill logic; split
apart, each would repeat them.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

ENV_CGROUP = "KVCOURSE_CGROUP"
#: Seconds between two looks of the watchdog.
POLL_SECONDS = 0.2
_COUNTER = itertools.count()
_KILLS: dict[str, str] = {}
_KILLS_LOCK = threading.Lock()


def _record_kill(workdir: str, reason: str) -> None:
    with _KILLS_LOCK:
        _KILLS[os.path.realpath(workdir)] = reason


def pop_kill_reason(workdir: str | os.PathLike[str]) -> str | None:
    """Why the budget killed the kernel that ran in ``workdir`` (None if it did not), once."""
    with _KILLS_LOCK:
        return _KILLS.pop(os.path.realpath(str(workdir)), None)


# ---------------------------------------------------------------------------------------
# finding the cgroup hierarchies


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, super options) of every cgroup mount."""
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) >= 5 and len(rfields) >= 3 and rfields[0] in ("cgroup", "cgroup2"):
            out.append((fields[4].replace("\\040", " "), rfields[0], rfields[2]))
    return out


def _own_paths() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            out[name] = path
    return out


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _field(text: str, key: str) -> int:
    m = re.search(rf"^{key} (\d+)$", text, re.MULTILINE)
    return int(m.group(1)) if m else 0


def _procs(folder: Path) -> list[int]:
    return [int(p) for p in _read(folder / "cgroup.procs").split()]


def _v2_parent() -> Path | None:
    """A cgroup v2 folder whose children may get memory and pids limits, made ready; or None."""
    unified = [m for m, kind, _ in _mounts() if kind == "cgroup2"]
    if not unified:
        return None
    configured = os.environ.get(ENV_CGROUP)
    base = Path(configured) if configured else Path(unified[0]) / _own_paths().get("", "/").lstrip("/")
    if not {"memory", "pids"} <= set(_read(base / "cgroup.controllers").split()):
        return None
    parent = base / "kvcourse"
    try:
        if not {"memory", "pids"} <= set(_read(base / "cgroup.subtree_control").split()):
            try:
                _write(base / "cgroup.subtree_control", "+memory +pids")
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    return None
                # processes live in base: move them into a leaf below it (same limits above them)
                host = base / "kvcourse-host"
                host.mkdir(exist_ok=True)
                for _ in range(5):
                    for pid in _procs(base):
                        try:
                            _write(host / "cgroup.procs", str(pid))
                        except OSError:
                            pass  # a process that exited meanwhile, or a kernel thread
                    try:
                        _write(base / "cgroup.subtree_control", "+memory +pids")
                        break
                    except OSError:
                        continue
                else:
                    return None
        parent.mkdir(exist_ok=True)
        if not {"memory", "pids"} <= set(_read(parent / "cgroup.subtree_control").split()):
            _write(parent / "cgroup.subtree_control", "+memory +pids")
    except OSError:
        return None
    return parent


def _v1_parents() -> tuple[Path, Path] | None:
    """The grader's own cgroup v1 memory and pids folders with a ``kvcourse`` child; or None."""
    found: dict[str, Path] = {}
    own = _own_paths()
    for mount, kind, options in _mounts():
        if kind != "cgroup":
            continue
        for controller in ("memory", "pids"):
            if controller in options.split(",") and controller not in found:
                found[controller] = Path(mount) / own.get(controller, "/").lstrip("/") / "kvcourse"
    if set(found) != {"memory", "pids"}:
        return None
    try:
        for folder in found.values():
            folder.mkdir(exist_ok=True)
    except OSError:
        return None
    return found["memory"], found["pids"]


@lru_cache(maxsize=1)
def backend() -> str:
    """"cgroup2", "cgroup1" or "watchdog" (see the module docstring); tried once per process.

    A cgroup backend is used only if a test group can be created, limited and removed here."""
    if os.environ.get(ENV_CGROUP, "").lower() == "off":
        return "watchdog"
    for kind in ("cgroup2", "cgroup1"):
        try:
            test = CgroupBudget(kind, 64 * 2**20, 16, "/nonexistent")
            try:
                joined = subprocess.run(test.prefix() + ["/bin/true"], timeout=10).returncode == 0
            finally:
                test.close()
            if joined:
                return kind
        except (OSError, RuntimeError, subprocess.SubprocessError):
            continue
    return "watchdog"


# ---------------------------------------------------------------------------------------
# the budgets


class Budget:
    """The budget of one submission's kernel. Use: ``prefix()`` before the kernel command,
    ``watch(pid)`` once it runs, ``close()`` when it is done (kills what is left)."""

    kind = "none"

    def __init__(self, memory_bytes: int, tasks: int, workdir: str) -> None:
        self.memory_bytes = memory_bytes
        self.tasks = tasks
        self.workdir = workdir
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prefix(self) -> list[str]:
        """Command-line words that put the command after them into the budget."""
        return []

    def procs_files(self) -> list[str]:
        """The files a process id is written into to join the budget (cgroups; none for the
        watchdog, which finds the submission's processes by their uid)."""
        return []

    def watch(self, pid: int | None) -> None:
        """Start the watchdog thread for the kernel's process ``pid`` (bwrap)."""
        self._root_pid = pid
        self._thread = threading.Thread(target=self._loop, name="kvcourse-budget", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            reason = self.exceeded()
            if reason:
                self.reason = reason
                _record_kill(self.workdir, reason)
                self.kill()
                return

    def exceeded(self) -> str | None:
        return None

    def kill(self) -> None:
        pass

    def close(self) -> None:
        self._stop.set()
        self.kill()

    def _memory_text(self) -> str:
        return f"{self.memory_bytes / 2**30:.3g} GiB"

    def _over_memory(self, detail: str = "") -> str:
        return (f"killed by the sandbox: the submission's processes together used more than the "
                f"{self._memory_text()} memory budget{detail}")

    def _over_tasks(self) -> str:
        return (f"killed by the sandbox: the submission reached its limit of {self.tasks} processes and "
                f"threads (a fork bomb?)")


class CgroupBudget(Budget):
    """One cgroup (v2) or one memory and one pids cgroup (v1) per submission."""

    def __init__(self, kind: str, memory_bytes: int, tasks: int, workdir: str) -> None:
        super().__init__(memory_bytes, tasks, workdir)
        self.kind = kind
        name = f"sub-{os.getpid()}-{next(_COUNTER)}"
        self.folders: list[Path] = []
        if kind == "cgroup2":
            parent = _v2_parent()
            if parent is None:
                raise RuntimeError("no cgroup v2 with memory and pids controllers here")
            group = parent / name
            group.mkdir()
            self.folders = [group]
            try:
                _write(group / "memory.max", str(memory_bytes))
                if (group / "memory.swap.max").exists():
                    _write(group / "memory.swap.max", "0")
                if (group / "memory.oom.group").exists():
                    _write(group / "memory.oom.group", "1")
                _write(group / "pids.max", str(tasks))
            except OSError:
                self.close()
                raise
        elif kind == "cgroup1":
            parents = _v1_parents()
            if parents is None:
                raise RuntimeError("no cgroup v1 memory and pids hierarchies here")
            memory, pids = parents[0] / name, parents[1] / name
            memory.mkdir()
            self.folders = [memory]
            try:
                pids.mkdir()
                self.folders.append(pids)
                _write(memory / "memory.limit_in_bytes", str(memory_bytes))
                if (memory / "memory.memsw.limit_in_bytes").exists():
                    try:
                        _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
                    except OSError:
                        pass  # swap accounting off: there is no swap to limit
                _write(pids / "pids.max", str(tasks))
            except OSError:
                self.close()
                raise
        else:
            raise ValueError(f"kind must be cgroup2 or cgroup1, got {kind!r}")

    def prefix(self) -> list[str]:
        # the shell joins every group, then becomes the command: all its children are inside
        joins = " && ".join(f"echo $$ > '{folder}/cgroup.procs'" for folder in self.folders)
        return ["/bin/sh", "-c", f"{{ {joins}; }} || exit 111; exec \"$@\"", "kvcourse-budget"]

    def procs_files(self) -> list[str]:
        return [str(folder / "cgroup.procs") for folder in self.folders]

    def exceeded(self) -> str | None:
        if self.kind == "cgroup2":
            group = self.folders[0]
            memory_events, pids_events = _read(group / "memory.events"), _read(group / "pids.events")
            if _field(memory_events, "oom_kill") or _field(memory_events, "oom"):
                return self._over_memory()
            if _field(pids_events, "max"):
                return self._over_tasks()
            return None
        memory, pids = self.folders
        if _field(_read(memory / "memory.oom_control"), "oom_kill"):
            return self._over_memory()
        if _field(_read(pids / "pids.events"), "max") or int(_read(pids / "pids.current") or 0) >= self.tasks:
            return self._over_tasks()
        return None

    def kill(self) -> None:
        for folder in self.folders:
            if (folder / "cgroup.kill").exists():
                try:
                    _write(folder / "cgroup.kill", "1")
                except OSError:
                    pass
        # v1 (and a v2 without cgroup.kill): kill until empty
        _kill_until_none(lambda: {pid for folder in self.folders for pid in _procs(folder)})

    def close(self) -> None:
        super().close()
        for folder in self.folders:
            for _ in range(100):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill()
                    time.sleep(0.05)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _read(Path(entry.path) / "stat")
        if not stat:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _tree(root: int) -> list[int]:
    tree = _children()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def _pss_bytes(pid: int) -> int:
    text = _read(Path(f"/proc/{pid}/smaps_rollup"))
    m = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    if m:
        return int(m.group(1)) * 1024
    statm = _read(Path(f"/proc/{pid}/statm")).split()
    return int(statm[1]) * os.sysconf("SC_PAGE_SIZE") if len(statm) > 1 else 0


def _threads(pid: int) -> int:
    return _field(_read(Path(f"/proc/{pid}/status")).replace(":\t", " "), "Threads") or 1


def _uid_pids(uid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            m = re.search(r"^Uid:\s+(\d+)", _read(Path(entry.path) / "status"), re.MULTILINE)
            if m and int(m.group(1)) == uid:
                out.append(int(entry.name))
    return out


class WatchdogBudget(Budget):
    """No cgroup: sum PSS and tasks over the submission's processes (those of its throw-away
    uid when there is one, else the kernel's process tree); kill them all when over."""

    kind = "watchdog"

    def __init__(self, memory_bytes: int, tasks: int, workdir: str, uid: int | None = None) -> None:
        super().__init__(memory_bytes, tasks, workdir)
        self.uid = uid

    def _members(self) -> list[int]:
        root = getattr(self, "_root_pid", None)
        members = set(_uid_pids(self.uid)) if self.uid is not None else set()
        if root is not None:
            members.update(_tree(root)[1:])  # below bwrap (bwrap itself is tiny and root's)
        return sorted(members)

    def exceeded(self) -> str | None:
        pids = self._members()
        if sum(_threads(p) for p in pids) >= self.tasks:
            return self._over_tasks()
        if sum(_pss_bytes(p) for p in pids) > self.memory_bytes:
            return self._over_memory(" (sum of the PSS of its processes)")
        return None

    def kill(self) -> None:
        _kill_until_none(self._members)


def _kill_until_none(members: Callable[[], set[int]]) -> None:
    """SIGKILL every process ``members()`` names, again, until none is left (about 1 s at most)."""
    for _ in range(50):
        pids = members()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.02)


def new_budget(memory_bytes: int, tasks: int, workdir: str, uid: int | None = None) -> Budget:
    """The budget for one submission's kernel with this machine's backend (``uid``: the
    submission's throw-away uid, for the watchdog)."""
    kind = backend()
    if kind != "watchdog":
        try:
            return CgroupBudget(kind, memory_bytes, tasks, workdir)
        except (OSError, RuntimeError):
            pass  # e.g. the parent group vanished: the watchdog still holds the line
    return WatchdogBudget(memory_bytes, tasks, workdir, uid)


def describe() -> str:
    kind = backend()
    return {"cgroup2": "a cgroup v2 per submission (memory.max, pids.max)",
            "cgroup1": "a cgroup v1 memory and pids group per submission",
            "watchdog": "a watchdog summing the memory and tasks of each submission's processes "
                        "(no usable cgroup here)"}[kind]


def main() -> int:
    print(f"budget backend: {backend()}: {describe()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
