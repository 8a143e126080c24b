"""Process-level plumbing shared by the owner and the worker processes: the event loop,
and dying with the parent."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def loop_factory():
    try:
        import uvloop
    except ImportError:  # uvloop is optional: plain asyncio works, a little slower
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def arm_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Linux: have the kernel send `sig` to this process when its parent dies. Elsewhere a
    no-op (callers have a second line: end of file on a pipe to the parent)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def die_with_parent(parent_pid: int) -> None:
    """Arm the parent-death signal, and exit now if the parent already died."""
    arm_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
