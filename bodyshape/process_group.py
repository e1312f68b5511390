"""A child process in its own process group, and killing that whole group.

``tritonserver`` starts one Python stub process per model instance; signalling the server
alone would leave the stubs behind. Starting it as a group leader (``setsid``) lets
:func:`kill_group` end the server and every stub together.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time

#: prctl option: the signal a child gets when the thread that forked it exits.
_PR_SET_PDEATHSIG = 1


def new_group() -> None:
    """``preexec_fn``: the child leads a new session and process group."""
    os.setsid()


def new_group_die_with_parent() -> None:
    """``preexec_fn``: as :func:`new_group`, and SIGTERM when the forking *thread* exits.

    Only for children forked by long-lived threads (the main thread, a watchdog): the
    signal comes when that thread ends, not the process. Covers a SIGKILLed parent.
    """
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _wait_group_gone(pgid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and group_alive(pgid):
        time.sleep(0.05)


def kill_group(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGTERM the group that ``proc`` leads, then SIGKILL what is left; return once it is gone."""
    pgid = proc.pid  # setsid() made the child a group leader
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)
    _wait_group_gone(pgid, 1.0)  # the stubs may outlive the server by a moment
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    _wait_group_gone(pgid, 5.0)  # killed stubs stay zombies until init reaps them
