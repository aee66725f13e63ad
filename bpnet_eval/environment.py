"""The machine a run is given: CPUs for torch threads, memory for size checks, HDF5 locking, whether it may fork.

Every function here only reads the environment (``bpnet_eval.process`` is what changes the process).
"""

import os
import sys
import threading
from typing import Mapping, Optional, Sequence

# Environment variables that already fix the thread count: respected as given.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_dirs(controller: str, proc_cgroup: str = "/proc/self/cgroup", root: str = CGROUP_ROOT) -> list:
    """The cgroup directories whose ``controller`` limits bind this process: its own cgroup and each ancestor,
    innermost first (v2's unified hierarchy, or v1's mount of ``controller``).

    Inside a container the path in ``/proc/self/cgroup`` (``/docker/<id>``) need not exist under the mount,
    whose root is then the container's own cgroup: only the directories that exist are listed.
    """
    try:
        with open(proc_cgroup) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers = parts[1].split(",")
        if parts[0] == "0" and parts[1] == "":  # v2: one hierarchy for every controller
            mounts = [root]
        elif controller in controllers:  # v1: this controller's own hierarchy ("cpu,cpuacct" or "cpu")
            mounts = [os.path.join(root, parts[1]), os.path.join(root, controller)]
        else:
            continue
        relative = [part for part in parts[2].split("/") if part]
        for mount in dict.fromkeys(mounts):
            for depth in range(len(relative), -1, -1):
                directory = os.path.join(mount, *relative[:depth])
                if os.path.isdir(directory) and directory not in found:
                    found.append(directory)
    return found


def cpu_quota_files(proc_cgroup: str = "/proc/self/cgroup", root: str = CGROUP_ROOT) -> tuple:
    """This process's CPU-quota files: cgroup v2 ``cpu.max`` and v1 ``cpu.cfs_quota_us``, innermost first."""
    names = ("cpu.max", "cpu.cfs_quota_us")
    return tuple(os.path.join(directory, name) for directory in cgroup_dirs("cpu", proc_cgroup, root)
                 for name in names if os.path.isfile(os.path.join(directory, name)))


def read_cpu_quota(path: str) -> Optional[int]:
    """CPUs one quota file allows, rounded up: v2 ``cpu.max`` ("<quota> <period>", "max <period>"), or v1
    ``cpu.cfs_quota_us`` (-1: none) with ``cpu.cfs_period_us`` beside it; None for no quota or an unreadable file."""
    try:
        with open(path) as handle:
            fields = handle.read().split()
        if os.path.basename(path) == "cpu.cfs_quota_us":
            with open(os.path.join(os.path.dirname(path), "cpu.cfs_period_us")) as handle:
                fields = fields[:1] + handle.read().split()[:1]
    except OSError:
        return None
    if len(fields) < 2 or not (fields[0].isdigit() and fields[1].isdigit()) or int(fields[1]) <= 0:
        return None
    return max(1, -(-int(fields[0]) // int(fields[1])))


def cgroup_cpu_quota(paths: Optional[Sequence[str]] = None) -> Optional[int]:
    """CPUs the cgroup CPU quota allows (``docker run --cpus``, Kubernetes limits), rounded up: the smallest
    quota of this process's cgroup and its ancestors (``paths``: the files to read, default
    ``cpu_quota_files()``); None without one."""
    quotas = [q for q in map(read_cpu_quota, cpu_quota_files() if paths is None else paths) if q is not None]
    return min(quotas) if quotas else None


def allotted_cpus(environ: Optional[Mapping[str, str]] = None, quota_files: Optional[Sequence[str]] = None) -> int:
    """CPUs this job was given: ``SLURM_CPUS_PER_TASK`` if set, else the affinity mask (else ``os.cpu_count()``)
    capped by the cgroup CPU quota (``quota_files``: as ``cgroup_cpu_quota``'s ``paths``)."""
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


def memory_limit_bytes(proc_cgroup: str = "/proc/self/cgroup", root: str = CGROUP_ROOT) -> int:
    """Memory this process may use: the smallest cgroup limit of its cgroup and its ancestors (v2
    ``memory.max``, v1 ``memory.limit_in_bytes``), else the machine's RAM."""
    limits = []
    for directory in cgroup_dirs("memory", proc_cgroup, root):
        for name in ("memory.max", "memory.limit_in_bytes"):
            try:
                with open(os.path.join(directory, name)) as handle:
                    text = handle.read().strip()
            except OSError:
                continue
            if text.isdigit() and int(text) < (1 << 60):
                limits.append(int(text))
    if limits:
        return min(limits)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def hdf5_locking_disabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when ``HDF5_USE_FILE_LOCKING`` says FALSE (HDF5's own switch for filesystems without locks)."""
    environ = os.environ if environ is None else environ
    return environ.get("HDF5_USE_FILE_LOCKING", "").strip().upper() in ("FALSE", "0", "NO", "OFF")


def fork_is_safe() -> bool:
    """On Linux, with no other Python thread running. Native thread pools (OpenBLAS's, started when numpy
    is imported, or torch's) may exist: they wait on their own locks, and the child never calls into them;
    what it runs (numpy, zlib, ``pread``, the interpreter, whose locks ``fork`` resets) is safe."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1
