"""The machine a run is given: CPUs for torch threads, memory for size checks, HDF5 locking.

Set once when the CLI starts; every function here only reads the environment.
"""

import ctypes
import os
import sys
from functools import lru_cache
from typing import Mapping, Optional

# Environment variables that already fix the thread count: respected as given.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def allotted_cpus(environ: Optional[Mapping[str, str]] = None) -> int:
    """CPUs this job was given: ``SLURM_CPUS_PER_TASK`` if set, else the affinity mask, else ``os.cpu_count()``."""
    environ = os.environ if environ is None else environ
    slurm = environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure_threads(environ: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """Set torch's intra-op threads to the allotted CPUs, unless OMP/MKL_NUM_THREADS already say;
    return the number set (None when left alone)."""
    environ = os.environ if environ is None else environ
    if any(environ.get(name, "").strip() for name in THREAD_VARIABLES):
        return None
    import torch

    threads = allotted_cpus(environ)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


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


def memory_limit_bytes() -> int:
    """Memory this process may use: the cgroup limit where one is set, else the machine's RAM."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):
            return int(text)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def hdf5_locking_disabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when ``HDF5_USE_FILE_LOCKING`` says FALSE (HDF5's own switch for filesystems without locks)."""
    environ = os.environ if environ is None else environ
    return environ.get("HDF5_USE_FILE_LOCKING", "").strip().upper() in ("FALSE", "0", "NO", "OFF")


# Caches that libraries put under HOME; pointed at a private temporary directory when HOME cannot be written.
CACHE_VARIABLES = {"MPLCONFIGDIR": "matplotlib", "XDG_CACHE_HOME": "cache"}


def private_temp_dir() -> str:
    """``$TMPDIR/bpnet-eval-<uid>``, created 0700; a fresh one if that name belongs to someone else."""
    import tempfile

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
    base = private_temp_dir()
    chosen = {name: os.path.join(base, CACHE_VARIABLES[name]) for name in unset}
    for path in chosen.values():
        os.makedirs(path, mode=0o700, exist_ok=True)
    environ.update(chosen)
    return chosen
