"""The warm trainer, server side (`python -m kdrepro.pool_server SOCKET LOCK_FD`, started by kdrepro.pool
with the lock already taken). It imports what training imports, and then only listens: each request is
forked into a child that becomes the job's process in all but its pid (its working directory, environment, stdin/stdout/stderr, a session of its own) and runs the
job's `kdrepro` command line. The server never computes with torch, so a child starts without an
OpenMP pool or a CUDA context and sets its threads and device as a fresh process would.

One loop, one thread (forking from a threaded process can inherit a held lock): it accepts requests,
reaps children and sends each job its child's exit status, and kills a child whose job went away
(Snakemake cancelled it: the job's end of the socket closes). It exits after IDLE_SECONDS with no run.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

import torch  # noqa: F401  (the point of the server: imported once, before any fork)

from kdrepro import cli, engine, pool  # noqa: F401  (engine: what a training child imports)

IDLE_SECONDS = float(os.environ.get("KDREPRO_SERVER_IDLE_SECONDS", 120))


def receive(conn: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _, _ = socket.recv_fds(conn, pool.HEADER.size, 3)
    if len(header) < pool.HEADER.size or len(fds) != 3:
        raise ConnectionError("incomplete request")
    (length,) = pool.HEADER.unpack(header)
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            raise ConnectionError("request cut short")
        body += chunk
    return json.loads(body), fds


def run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the job's process and run its command line; never returns."""
    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    status = 0
    try:
        cli.main(request["argv"])
    except SystemExit as exit_:
        if isinstance(exit_.code, int) or exit_.code is None:
            status = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            status = 1
    except BaseException:  # noqa: BLE001  (a fresh process would print it and exit 1)
        traceback.print_exc()
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:
                pass
        os._exit(status)


def exit_status(wait_status: int) -> int:
    """As a shell reports it: the exit code, or 128 + the signal that killed the child."""
    return os.waitstatus_to_exitcode(wait_status) if os.WIFEXITED(wait_status) else 128 + os.WTERMSIG(wait_status)


def serve(sock_path: Path, listener: socket.socket, lock_fd: int) -> None:
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    idle_since = time.monotonic()
    while children or time.monotonic() - idle_since < IDLE_SECONDS:
        for key, _ in selector.select(timeout=0.2):
            if key.fileobj is listener:
                conn, _ = listener.accept()
                try:
                    request, fds = receive(conn)
                except (ConnectionError, OSError, ValueError) as err:
                    print(f"dropped a request: {err}", file=sys.stderr, flush=True)
                    conn.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:  # the child keeps none of the server's files: a lock held by a run would outlive the server
                    for own in (listener, conn, selector, *children.values()):
                        own.close()
                    os.close(lock_fd)
                    run_child(request, fds)
                for fd in fds:
                    os.close(fd)
                children[pid] = conn
                selector.register(conn, selectors.EVENT_READ, pid)
            elif not key.fileobj.recv(1):  # the job went away (its end closed): so does its run
                try:
                    os.killpg(key.data, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        while children:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = children.pop(pid)
            selector.unregister(conn)
            try:
                conn.sendall(pool.STATUS.pack(exit_status(wait_status)))
            except OSError:
                pass
            conn.close()
            idle_since = time.monotonic()
    sock_path.unlink(missing_ok=True)


def main(sock_path: Path, lock_fd: int) -> None:
    """`lock_fd`: the lock file, locked by the client that started this server (kdrepro.pool)."""
    sock_path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)
    listener.bind(str(sock_path))
    os.umask(old_umask)
    listener.listen(64)
    print(f"{time.strftime('%F %T')} warm trainer {os.getpid()} serving {sock_path}", flush=True)
    serve(sock_path, listener, lock_fd)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
