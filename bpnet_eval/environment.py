"""The machine a run is given: CPUs for torch threads, memory for size checks, HDF5 locking.

Every function here only reads the environment (``bpnet_eval.process`` is what changes the process).
"""

import os
from typing import Mapping, Optional

# Environment variables that already fix the thread count: respected as given.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


CPU_QUOTA_FILES = ("/sys/fs/cgroup/cpu.max",)  # cgroup v2: "<quota> <period>" or "max <period>"


def cgroup_cpu_quota(paths=CPU_QUOTA_FILES) -> Optional[int]:
    """CPUs the cgroup CPU quota allows (``docker run --cpus``, Kubernetes limits), rounded up; None without one."""
    for path in paths:
        try:
            with open(path) as handle:
                quota, period = handle.read().split()[:2]
        except (OSError, ValueError):
            continue
        if quota.isdigit() and period.isdigit() and int(period) > 0:
            return max(1, -(-int(quota) // int(period)))
    return None


def allotted_cpus(environ: Optional[Mapping[str, str]] = None, quota_files=CPU_QUOTA_FILES) -> int:
    """CPUs this job was given: ``SLURM_CPUS_PER_TASK`` if set, else the affinity mask (else ``os.cpu_count()``)
    capped by the cgroup CPU quota."""
    environ = os.environ if environ is None else environ
    slurm = environ.get("SLURM_CPUS_PER_TASK", "").strip()
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = max(1, os.cpu_count() or 1)
    quota = cgroup_cpu_quota(quota_files)
    return cpus if quota is None else min(cpus, quota)


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
