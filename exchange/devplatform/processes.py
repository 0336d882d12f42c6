"""Background processes with pid files, stopped only by their own pid."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path


def read_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and is ours (its command has ``marker``).

    The marker check keeps us from signalling an unrelated process that reused the pid.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    cmdline = _cmdline(pid)
    return pid if cmdline is not None and marker in cmdline else None


def _cmdline(pid: int) -> str | None:
    # Right after fork/exec the kernel can show an empty cmdline for a moment: wait it out.
    for _ in range(40):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if raw or not alive(pid):
            return raw.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.05)
    return ""


#: Kafka keeps files open per partition (each segment's log, its transaction index while one
#: is written): with thousands of delivery topics the usual limits (1,024 soft, 20,000 hard on
#: the build machine) ran out ("Too many open files" in bench.many_grants). Kafka's operations
#: guide suggests 100,000; this is Linux's default ceiling (``fs.nr_open``).
OPEN_FILES = 1_048_576


def more_open_files() -> None:
    """Raise this process's open-files limit as far as allowed: the hard limit too when
    privileged (root), else the soft one to the hard one. Run in the child before exec."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (max(hard, OPEN_FILES), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return
        except (ValueError, OSError):
            continue


def start(
    argv: list[str],
    log_file: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the CLI; not killed by the shell's Ctrl-C
            env={**os.environ, **(env or {})},
            cwd=cwd,
            preexec_fn=more_open_files,
            # What the platform writes (broker data with names and salts, logs, keys) is for
            # the account that runs it only: files 0600, folders 0700.
            umask=0o077,
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our exited child not yet reaped) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop(pid: int, timeout_s: float = 30.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout_s``. True if it had to be killed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid):
            return False
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: nothing to reap
        os.waitpid(pid, os.WNOHANG)


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def tail(file: Path, lines: int) -> list[str]:
    try:
        with file.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:]


def private_tree(root: Path) -> None:
    """Make ``root`` and everything under it the owner's only (folders 0700, files 0600): a
    platform created before the processes' umask was set keeps no readable data. Symbolic
    links are not followed, and what this account may not change is left as it is."""
    if not root.is_dir() or root.is_symlink():
        return
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for path, mode in ((here, 0o700), *((here / f, 0o600) for f in files)):
            if path.is_symlink():
                continue
            with contextlib.suppress(PermissionError):
                path.chmod(mode)
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
