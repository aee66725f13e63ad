"""The machine a run is given: CPUs for torch threads, memory for size checks, HDF5 locking.

Every function here only reads the environment (``bpnet_eval.process`` is what changes the process).
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


def torch_threads(environ: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """torch threads for a run given the allotted CPUs: ``allotted_cpus()``, or None (leave torch alone) when
    OMP/MKL_NUM_THREADS already say."""
    environ = os.environ if environ is None else environ
    if any(environ.get(name, "").strip() for name in THREAD_VARIABLES):
        return None
    return allotted_cpus(environ)


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
