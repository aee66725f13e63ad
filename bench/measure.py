"""Run one command and measure it: wall time, CPU time, the largest process and the whole run's memory.

    python bench/measure.py CMD [ARGS...]    # prints one JSON object

* ``wall_s``: seconds from start to exit;
* ``cpu_s``: user + system seconds of the command and every process it reaped (``RUSAGE_CHILDREN``);
* ``peak_rss_mb``: the largest resident set of any one of its processes (``ru_maxrss``): what one process held,
  not the run;
* ``run_peak_mb``: the run's memory, the largest sum over the command's process tree (the command, its children
  and theirs, found through ``/proc/<pid>/task/<tid>/children``) of each process's proportional set size (PSS,
  ``/proc/<pid>/smaps_rollup``: a page shared by k processes counts 1/k in each, so pages a fork shares with its
  parent and shared memory count once), sampled every ``MEASURE_INTERVAL_S`` seconds by a thread of this process
  (default 0.5: reading it costs the kernel ~4 ms a process, and sampling every 0.2 s slowed a 2 s run by ~5% on
  2 cores). What a memory limit on the job (a cgroup, an HPC scheduler's) sees, to within what lives
  between two samples; never below ``peak_rss_mb`` (a run shorter than a sample's interval is seen by that alone).
  Where ``/proc`` does not give it (not Linux), ``peak_rss_mb``.

This process starts the command, so the driver's own resident pages (numpy, torch) count in none of them; it
imports only the standard library.
"""

import json
import os
import resource
import subprocess
import sys
import threading
import time

INTERVAL_S = float(os.environ.get("MEASURE_INTERVAL_S", "0.5"))


def process_tree(pid: int) -> list:
    """``pid`` and every process descending from it (children of each of their threads), as far as /proc says."""
    tree, at = [pid], 0
    while at < len(tree):
        parent, at = tree[at], at + 1
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for thread in threads:
            try:
                with open(f"/proc/{parent}/task/{thread}/children") as children:
                    tree.extend(int(child) for child in children.read().split())
            except OSError:
                continue
    return tree


def pss_kb(pid: int):
    """The proportional set size of process ``pid`` in kB; None where /proc does not give it."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_pss_kb(pid: int):
    """The sum of the PSS of ``pid``'s process tree (kB); None where /proc gives none of them."""
    sizes = [size for size in map(pss_kb, process_tree(pid)) if size is not None]
    return sum(sizes) if sizes else None


def sample_peak(process: subprocess.Popen, peak: list, done: threading.Event) -> None:
    """Keep ``peak[0]`` the largest ``tree_pss_kb`` of ``process`` seen until it exits (``done``)."""
    while process.poll() is None:
        size = tree_pss_kb(process.pid)
        if size is not None and (peak[0] is None or size > peak[0]):
            peak[0] = size
        if done.wait(INTERVAL_S):
            return


def measure(command: list) -> dict:
    """Run ``command`` to completion, with what the module's docstring says."""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, done = [None], threading.Event()
    sampler = threading.Thread(target=sample_peak, args=(process, peak, done), daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - began
    done.set()
    sampler.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    largest = usage.ru_maxrss / 1024
    return {"wall_s": wall, "returncode": process.returncode, "stdout": stdout, "stderr": stderr,
            "peak_rss_mb": largest, "cpu_s": usage.ru_utime + usage.ru_stime,
            "run_peak_mb": max(largest, (peak[0] or 0) / 1024)}


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1:])))
