"""The machine a run is given: CPUs for torch threads, memory for size checks, HDF5 locking.

Set once when the CLI starts; every function here only reads the environment.
"""

import os
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
