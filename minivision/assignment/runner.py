"""Run a command that executes graded code: in its own process group, with a deadline, and
with a private socket for results.

Nothing the command can write is read as a result except the lines it sends on the socket
that begin with a token: the grader sends the token down the socket before the command
starts, and the grading plugin reads it at import, before the graded package can. Output
goes to an unnamed temporary file, not a pipe (a forked process holding a pipe open would
keep a reader waiting); only its tail is read, and only for messages. When the command
exits or runs out of time, its whole process group is killed, so what it forked dies too.
POSIX only (process groups, inherited sockets).
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

CHANNEL_ENV = "MINIVISION_GRADING_FD"  # the socket's descriptor number in the command (read by pytest_grading.py)
POLL_S = 0.1  # how often the reader checks whether the command has exited
CHUNK = 1 << 16
MAX_CHANNEL_BYTES = (
    32 << 20
)  # a run that sends more than this loses the rest (a flood, not test reports)
OUTPUT_TAIL = 1 << 16  # the bytes of output kept for messages


@dataclass
class Finished:
    """How a command ended: ``status`` is its exit status (None when it was killed at the
    deadline), ``output`` the tail of its stdout and stderr, ``records`` the JSON objects it
    sent with the token, in order."""

    status: int | None
    output: str
    records: list = field(default_factory=list)


def run(command, env: dict, cwd, timeout: float, channel: bool = False) -> Finished:
    """Run ``command`` for at most ``timeout`` seconds; with ``channel``, give it a socket
    (its descriptor number in ``env[CHANNEL_ENV]``, the token as its first line) and
    collect the records sent on it."""
    token = secrets.token_hex(16).encode()
    ours, theirs = socket.socketpair() if channel else (None, None)
    pass_fds = ()
    if channel:
        ours.sendall(token + b"\n")
        env = {**env, CHANNEL_ENV: str(theirs.fileno())}
        pass_fds = (theirs.fileno(),)
    try:
        with tempfile.TemporaryFile() as out:
            try:
                process = subprocess.Popen(
                    command,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=pass_fds,
                )
            finally:
                if theirs is not None:
                    theirs.close()  # the command holds its own copy; ours would hide its end-of-file
            try:
                data, timed_out = _wait(process, ours, time.monotonic() + timeout)
            finally:
                _kill_group(process)
            if ours is not None:
                data += _drain(ours, MAX_CHANNEL_BYTES - len(data))
            output = _tail(out)
    finally:
        if ours is not None:
            ours.close()
    return Finished(None if timed_out else process.returncode, output, _records(data, token))


def _wait(process, sock, deadline: float) -> tuple[bytearray, bool]:
    """Read ``sock`` (if any) until the process exits or the deadline passes; (what was
    read, whether the deadline passed first)."""
    data = bytearray()
    while sock is not None and process.poll() is None and time.monotonic() < deadline:
        if select.select([sock], [], [], min(POLL_S, max(deadline - time.monotonic(), 0)))[0]:
            chunk = sock.recv(CHUNK)
            if not chunk:
                break  # every copy of the command's end is closed: only the exit is left to wait for
            data += chunk[: MAX_CHANNEL_BYTES - len(data)]
    try:
        process.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        return data, True
    return data, False


def _kill_group(process) -> None:
    """Kill the process group the command leads (its forks included) and reap the command."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already
    process.wait()


def _drain(sock, limit: int) -> bytes:
    """What is left in ``sock`` once its writers are dead, up to ``limit`` bytes."""
    sock.setblocking(False)
    data = bytearray()
    while len(data) < limit:
        try:
            chunk = sock.recv(CHUNK)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data[: max(limit, 0)])


def _tail(file) -> str:
    """The last OUTPUT_TAIL bytes written to ``file``, as text."""
    size = file.seek(0, os.SEEK_END)
    file.seek(max(size - OUTPUT_TAIL, 0))
    return file.read().decode("utf-8", errors="replace")


def _records(data: bytes, token: bytes) -> list:
    """The JSON objects on the lines of ``data`` that begin with ``token`` and a space; any
    other line (written by the graded code, or cut short) is dropped."""
    prefix = token + b" "
    records = []
    for line in bytes(data).split(b"\n"):
        if not line.startswith(prefix):
            continue
        try:
            record = json.loads(line[len(prefix) :])
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
