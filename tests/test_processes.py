"""lionloop.processes: the liveness checks the launcher and the vLLM sidecar wait on, with real
child processes (a zombie must count as gone, or a resumed loop waits for a dead launch forever)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from lionloop.processes import (
    free_port,
    pid_alive,
    process_group_alive,
    signal_group,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")


def _wait_until(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_a_running_child_is_alive_and_its_zombie_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert pid_alive(child.pid)
        child.stdin.close()  # the child exits; not waited on yet, it stays a zombie
        assert _wait_until(lambda: not pid_alive(child.pid))
        assert os.waitpid(child.pid, os.WNOHANG)[0] == child.pid  # it was a zombie, reaped only now
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)


def test_a_process_group_is_alive_until_its_last_member_exits_and_can_be_signalled():
    # a leader in a session of its own with a grandchild: the group outlives the leader's exit
    leader = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
         "time.sleep(60)"],
        start_new_session=True)
    try:
        assert _wait_until(lambda: process_group_alive(leader.pid))
        assert signal_group(leader.pid, signal.SIGTERM)
        leader.wait(timeout=10)
        assert _wait_until(lambda: not process_group_alive(leader.pid)), "the grandchild outlived SIGTERM to its group"
    finally:
        signal_group(leader.pid, signal.SIGKILL)
    assert not signal_group(leader.pid, signal.SIGTERM)  # nothing left to signal


def test_free_port_can_be_bound():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        assert s.getsockname()[1] == port


def test_a_child_that_asked_to_die_with_its_parent_does():
    # parent -> child (asks for SIGKILL on the parent's death) ; the parent is killed -> the child dies
    code = (
        "import os, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'from lionloop.processes import die_with_parent; import time; "
        "print(die_with_parent(), flush=True); time.sleep(60)'], stdout=subprocess.PIPE, text=True)\n"
        "print(child.pid, child.stdout.readline().strip(), flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pid, requested = parent.stdout.readline().split()
        assert requested == "True"
        assert pid_alive(int(pid))
        parent.kill()
        parent.wait()
        assert _wait_until(lambda: not pid_alive(int(pid))), "the child outlived its parent"
    finally:
        parent.kill()
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, UnboundLocalError, ValueError):
            pass
