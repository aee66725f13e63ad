"""Processes and directories as the tests watch them: whether a worker is still there, waiting for a run to reach
a point, stopping it by a signal, and everything a directory holds."""

import os
import time
from pathlib import Path


def alive(pid) -> bool:
    """True while ``pid`` exists (a zombie too: its parent has not reaped it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def process_state(pid):
    """The state letter of ``pid`` in ``/proc`` (``Z``: a zombie), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_for(condition, process, timeout=120):
    """Wait until ``condition()`` holds, ``process`` (a ``Popen``) has ended or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not condition() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)


def stop_promptly(process, signal_number, within=5.0) -> str:
    """Send ``signal_number`` to ``process`` (a ``Popen`` with stderr a text pipe) and return its stderr once it
    ended, asserting that it ended within ``within`` seconds."""
    process.send_signal(signal_number)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=120)
    assert time.monotonic() - started < within, "the run did not stop promptly"
    return stderr


def snapshot(directory):
    """Everything under ``directory`` (hidden files too): relative path → bytes ("<dir>" for a directory);
    None when it does not exist."""
    directory = Path(directory)
    if not os.path.lexists(directory):
        return None
    return {str(p.relative_to(directory)): (b"<dir>" if p.is_dir() else p.read_bytes())
            for p in sorted(directory.rglob("*"))}
