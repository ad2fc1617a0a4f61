"""Child processes the loop and its test servers start: free ports, liveness, and dying with the parent.

Shared by the accelerate launcher (lionloop.loop.launcher, train_worker) and the vLLM test sidecar
(lionloop.testing.vllm_server): one place that reads /proc and calls prctl.
"""

from __future__ import annotations

import ctypes  # imported here, not in die_with_parent: that may run between fork and exec
import os
import signal
import socket
import sys
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send this process `sig` when its parent dies (Linux PR_SET_PDEATHSIG; a
    no-op elsewhere). True when the request took effect; False where it could not be made."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False
    return True


def _state(stat: str) -> list[str]:
    # /proc/PID/stat: "pid (comm) state ppid pgrp ..." - comm may contain ")".
    return stat.rsplit(")", 1)[-1].split()


def pid_alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie counts as gone). Reads /proc (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return _state(stat)[0] != "Z"


def process_group_alive(pgid: int) -> bool:
    """True while any non-zombie process is left in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or the pgid reused by another user
        return False
    # killpg(..., 0) also succeeds for zombies; check /proc where available.
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():  # pragma: no cover - non-Linux
        return True
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _state((entry / "stat").read_text())
        except OSError:
            continue
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to process group `pgid`; False when the group is gone or not ours."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
