"""Process-wide settings, applied only by the CLI entry point (``bpnet_eval.cli.main``): a Python session that
imports ``bpnet_eval`` and calls ``score()`` keeps its allocator, environment and signal handlers as they were.
"""

import ctypes
import os
import signal
import sys
import tempfile
from functools import lru_cache

from .errors import EXIT_RUNTIME


def tune_process() -> None:
    """What the CLI sets before any work: the allocator's thresholds (before any worker is forked, so that
    the workers keep them), cache directories where HOME cannot be written, and SIGTERM handled like Ctrl-C."""
    return_batch_memory()
    configure_caches()
    stop_on_sigterm()
    one_blas_thread()


# numpy's BLAS (OpenBLAS) thread pool, unless the environment already sizes it.
BLAS_THREAD_VARIABLE = "OPENBLAS_NUM_THREADS"


def one_blas_thread(environ=None) -> bool:
    """Run numpy's BLAS in one thread (set before numpy is imported; False where the environment already says):
    the tool's products are small (count correlations, bootstrap sums), and OpenBLAS's idle threads spin after
    each call (0.2 s of CPU per second here), beside the reading processes."""
    environ = os.environ if environ is None else environ
    if environ.get(BLAS_THREAD_VARIABLE, "").strip():
        return False
    environ[BLAS_THREAD_VARIABLE] = "1"
    return True


def _terminated(signum, frame):
    raise KeyboardInterrupt  # the same path as Ctrl-C: nothing half-written, one line, exit 130


def stop_on_sigterm() -> None:
    """End the run on SIGTERM (``docker stop``, a scheduler's kill) as on Ctrl-C, at once: PID 1 in a
    container ignores SIGTERM unless it has a handler, so ``docker stop`` would otherwise wait and SIGKILL."""
    signal.signal(signal.SIGTERM, _terminated)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
BATCH_MMAP_THRESHOLD = 8 << 20
HEAP_TRIM_THRESHOLD = 64 << 20


@lru_cache(maxsize=None)
def return_batch_memory() -> bool:
    """Fix glibc's mmap threshold at 8 MB, so that the peak RSS stays flat in the number of batches.

    glibc otherwise raises its threshold after each large free, and serves ever larger blocks from
    per-thread heaps that fragment. 8 MB rather than less: below it, batch-sized arrays and torch
    temporaries are reused from the heap; at 1 MB every one of them was a fresh mmap whose page faults
    took 4.9 s of system time in an 8.4 s run of the 100k benchmark (6.1 s at 8 MB, RSS still flat).
    Fixing the mmap threshold also freezes glibc's trim threshold at 128 kB, so the heap would be
    returned to the system after every freed chunk and faulted in again (2.5 s of system time per
    100k regions): the trim threshold is set to 64 MB, a bound on the free heap kept.
    A no-op (False) off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, BATCH_MMAP_THRESHOLD)) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


def trim_heap() -> bool:
    """Return the free heap to the system (glibc ``malloc_trim``) where ``return_batch_memory`` raised the trim
    threshold: after a one-off burst of small allocations (a bigWig decoded whole: its blocks' intervals, a few MB each)
    a process otherwise keeps up to 64 MB of freed heap to the end of the run. False where nothing was trimmed
    (another allocator, or a Python session that did not tune its allocator)."""
    if not return_batch_memory.cache_info().currsize or not return_batch_memory():
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


# Caches that libraries put under HOME; pointed at a private temporary directory when HOME cannot be written.
CACHE_VARIABLES = {"MPLCONFIGDIR": "matplotlib", "XDG_CACHE_HOME": "cache"}


def private_temp_dir() -> str:
    """``$TMPDIR/bpnet-eval-<uid>``, created 0700; a fresh one if that name belongs to someone else."""
    path = os.path.join(tempfile.gettempdir(), f"bpnet-eval-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if info.st_uid == os.getuid() and not os.path.islink(path) and os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="bpnet-eval-")


def configure_caches(environ=None) -> dict:
    """Where HOME is not writable (containers, Apptainer), set unset cache variables to a private
    temporary directory; return what was set."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME") or os.path.expanduser("~")
    unset = [name for name in CACHE_VARIABLES if not environ.get(name)]
    if not unset or (os.path.isdir(home) and os.access(home, os.W_OK)):
        return {}
    try:
        base = private_temp_dir()
        chosen = {name: os.path.join(base, CACHE_VARIABLES[name]) for name in unset}
        for path in chosen.values():
            os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:  # no writable temporary directory anywhere (a read-only container): caches stay unset
        return {}
    environ.update(chosen)
    return chosen


def exit_now(code: int) -> None:
    """Flush stdout and stderr and end the process at once: every report file is written and closed by then,
    and the interpreter's teardown (unloading torch) would add about 0.4 s to every run."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the stream was closed when the process started (``>&-``)
                stream.flush()
        except (OSError, ValueError):
            code = code or EXIT_RUNTIME
    os._exit(code)
