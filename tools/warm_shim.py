"""Stand-in process for one forked copy of the warm parent (``tools/zygote.py``).

The grader starts this tiny program where it would start a cold sandboxed process (the kernel
command of jupyter_client, the verdict's student process): ``python -I -S warm_shim.py SOCKET
REQUEST_FILE [CGROUP_PROCS ...]``. It hands the request (and, for a program, its own standard
input and output) to the warm parent, puts the forked copy into the submission's cgroups
(``cgroup.procs`` files: the memory and task budget, ``tools/budget.py``), lets it start, and
exits with the student's process's exit status. Killing this process kills the copy and every
process it started: the copy watches the connection.

Standard library only (and ``zygote.read_line`` beside it), no site packages: it starts in a
few milliseconds.
"""

import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves this folder out
from zygote import read_line  # noqa: E402 - beside this file


def main(argv: list[str]) -> int:
    path, request_file, procs_files = argv[0], argv[1], argv[2:]
    with open(request_file, "rb") as f:
        request = f.read()
    kind = json.loads(request)["kind"]
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    fds = [0, 1] if kind == "program" else []
    socket.send_fds(conn, [request.rstrip(b"\n") + b"\n"], fds)
    answer = read_line(conn)
    if not answer or "pid" not in answer:
        print(f"warm start failed: {answer}", file=sys.stderr)
        return 111
    for procs in procs_files:
        with open(procs, "w") as f:
            f.write(str(answer["pid"]))
    conn.sendall(b'{"go": true}\n')
    if kind == "program":  # the copy holds them now: a read here would steal the conversation
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
    done = read_line(conn)
    if not done or "exit" not in done:
        return 112
    code = int(done["exit"])
    return code if 0 <= code < 256 else 128 + (-code % 128)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
