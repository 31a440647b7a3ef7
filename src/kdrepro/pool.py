"""The warm trainer, client side: a train job hands its run to one warm process per host and code version.

Each training job used to spend most of its life starting up (importing torch, loading the package),
which dominated the default setting's short runs. With `kdrepro train --server` (what the train rule
runs when the setting's `train_server` is true), the job imports nothing heavy: it finds the server for
this code, this Python and this environment by a socket, starts it if there is none (the first job
waits for the imports once), and sends its command line, working directory, environment and its own
stdin/stdout/stderr. The server (kdrepro.pool_server) forks a child per run from its warm state; the
child runs the same command line as a fresh `kdrepro train` would, with its output on the job's log,
and its exit status becomes the job's. So every run stays its own Snakemake job, locally and on a
cluster: outputs, logs and benchmark files where they were, and a killed job, bundle or server leaves
the finished runs finished and this one resumable from its resume state.

Where no server can be reached (it failed to start, or the socket directory is not writable), the job
says so on its log and trains in its own process, as without `--server`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# variables that differ between the shells of one workflow's jobs without changing what a run computes
VOLATILE_ENV = {"_", "PWD", "OLDPWD", "SHLVL"}
START_SECONDS = float(os.environ.get("KDREPRO_SERVER_START_SECONDS", 180))  # importing torch under heavy load
HEADER = struct.Struct("!Q")  # request length, sent with the three file descriptors
STATUS = struct.Struct("!i")  # the child's exit status


def server_dir() -> Path:
    """Private to the user: the sockets let anyone who can open them run code as that user."""
    base = os.environ.get("KDREPRO_SERVER_DIR") or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"kdrepro-{os.getuid()}"


def signature(env: dict[str, str]) -> str:
    """The server's identity: the interpreter, every source file of the package (path, size and mtime)
    and the environment, which the server's imports read once (HOME for the caches, the kernels' pin,
    thread variables, PYTHONPATH). Any change gives another server; the old one exits when idle."""
    digest = hashlib.sha256(sys.executable.encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    for key in sorted(set(env) - VOLATILE_ENV):
        digest.update(f"{key}={env[key]}\0".encode())
    return digest.hexdigest()[:16]


def paths(key: str) -> tuple[Path, Path, Path]:
    """The server's socket, the lock it holds while it lives, and its own log."""
    base = server_dir() / f"trainer-{key}"
    return base.with_suffix(".sock"), base.with_suffix(".lock"), base.with_suffix(".log")


def take_lock(lock: Path):
    """The lock file, opened and locked, or None: a live (or starting) server holds the lock."""
    handle = open(lock, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def start_server(sock: Path, handle, log: Path, env: dict[str, str]) -> None:
    """Starts the server with the lock already taken: its copy of the locked file keeps it held (a lock
    belongs to the open file, which the child inherits), so no second client starts another server
    while this one imports torch."""
    with open(log, "ab") as out, handle:
        subprocess.Popen([sys.executable, "-m", "kdrepro.pool_server", str(sock), str(handle.fileno())], env=env,
                         cwd="/", stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True, pass_fds=[handle.fileno()])


def connect(env: dict[str, str]) -> socket.socket | None:
    """A connection to the server for `env`, starting it if none lives; None when none can be reached."""
    directory = server_dir()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        owner = directory.stat()
        if owner.st_uid != os.getuid() or owner.st_mode & 0o077:
            raise PermissionError(f"{directory} must be the user's own, mode 0700")
    except OSError as err:
        print(f"kdrepro: no warm trainer ({err}); training in this process", file=sys.stderr)
        return None
    sock_path, lock, log = paths(signature(env))
    deadline, started = time.monotonic() + START_SECONDS, False
    while time.monotonic() < deadline:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(sock_path))
            return conn
        except (FileNotFoundError, ConnectionRefusedError):
            conn.close()
        except OSError as err:  # e.g. a socket path over the system's limit (about 100 bytes)
            conn.close()
            print(f"kdrepro: no warm trainer ({err}: {sock_path}); training in this process", file=sys.stderr)
            return None
        handle = take_lock(lock)
        if handle is not None:
            if started:
                handle.close()
                break  # the server it started died: its log says why
            start_server(sock_path, handle, log, env)
            started = True
        time.sleep(0.05)
    print(f"kdrepro: the warm trainer did not answer (see {log}); training in this process", file=sys.stderr)
    return None


def fill_standard_streams() -> None:
    """A job may start with stdin (or more) closed. Then the next file opened would take its number: the
    server's lock file, handed to the server as fd 0 and replaced there by its stdin. /dev/null fills each
    closed one first (a new file takes the lowest free number), and is what the run gets as that stream."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)


def hand_over(argv: list[str]) -> int | None:
    """Runs `kdrepro <argv>` in a child of the warm server, on this process's stdin/stdout/stderr, and
    returns its exit status; None when no server can be reached (the caller then trains itself)."""
    fill_standard_streams()
    env = dict(os.environ)
    if "SLURM_STEP_ID" in env:
        # SLURM's job-step executor runs each job of a bundle as an srun step of its own, and a step's
        # processes end with it: a server started here would serve this run only
        print("kdrepro: inside a SLURM job step, which ends its processes with it: training in this process",
              file=sys.stderr)
        return None
    conn = connect(env)
    if conn is None:
        return None
    with conn:
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env}).encode()
        sys.stdout.flush()
        sys.stderr.flush()
        socket.send_fds(conn, [HEADER.pack(len(request))], [0, 1, 2])
        conn.sendall(request)
        reply = b""
        while len(reply) < STATUS.size:
            chunk = conn.recv(STATUS.size - len(reply))
            if not chunk:
                print("kdrepro: the warm trainer stopped before the run ended (its log is in "
                      f"{server_dir()})", file=sys.stderr)
                return 1
            reply += chunk
    return STATUS.unpack(reply)[0]
