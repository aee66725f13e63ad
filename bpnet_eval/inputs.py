"""The inputs of a run, opened and validated, and the batches read from them (no torch here).

``open_inputs`` opens the predictions, the regions and the observed tracks, validates their
structure, and starts reading ahead; the pipeline then scores ``Inputs.batches()``. The CLI opens
the inputs before it imports torch, so reading worker processes are forked from a one-thread
process and the torch import overlaps the reading.
"""

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .environment import allotted_cpus, return_batch_memory
from .errors import UsageError
from .workers import ProcessReadAhead, fork_is_safe
from .regions import Regions, read_region_file
from .sources.npz import NpzPredictions, npz_prediction_paths
from .sources.predicted_bigwig import BigWigPredictions, bigwig_prediction_paths
from .sources.predictions import ArrayPredictions, HDF5Predictions
from .sources.tracks import ArrayTruth, BigWigTruth, open_truth
from .validate import Findings, Policies, check_structure

NO_REGIONS = "none (row numbers)"
MAX_READ_WORKERS = 4


def _open_predictions(predictions, allow_external_links=False, regions=None, pred_pseudocount: float = 0.0,
                      pred_logcounts: str = "log", **options):
    npz = npz_prediction_paths(predictions)
    if npz is not None:  # bpnet-lite 0.9: profile logits and log counts in two .npz files
        return NpzPredictions(npz)
    bigwigs = bigwig_prediction_paths(predictions)
    if bigwigs is not None:  # counts-scale bigWigs, one per track, read over the regions
        return BigWigPredictions(bigwigs, regions, pred_pseudocount, pred_logcounts)
    if pred_pseudocount or pred_logcounts != "log":
        raise UsageError("--pred-pseudocount and --pred-logcounts apply to bigWig predictions only; "
                         "HDF5 predictions carry their own log counts")
    if isinstance(predictions, (tuple, list)) and len(predictions) == 2:
        return ArrayPredictions(*predictions)
    if allow_external_links:
        options["allow_external_links"] = True
    return HDF5Predictions(predictions, **options)


def _open_truth(truth, regions, dataset, allow_external_links=False):
    if isinstance(truth, str) or hasattr(truth, "__fspath__"):
        return open_truth([truth], regions, dataset, allow_external_links)
    if hasattr(truth, "shape"):  # a numpy array or a torch tensor
        return ArrayTruth(np.asarray(truth))
    return open_truth(list(truth), regions, dataset, allow_external_links)


def _resolve_regions(preds, regions) -> Optional[Regions]:
    if regions is None:
        return preds.regions()
    if isinstance(regions, Regions):
        return regions
    return read_region_file(regions, preds.length)


def open_sources(predictions, truth, regions=None, *, truth_dataset: Optional[str] = None,
                 policies: Optional[Policies] = None, batch_size: int = 1024, **prediction_options):
    """Open the predictions, the regions and the truth, and validate their structure (nothing read yet).

    Returns ``(preds, regions or None, truth, findings)``; the caller raises or lists ``findings.problems``
    and closes both sources.
    """
    policies = policies or Policies()
    preds = _open_predictions(predictions, allow_external_links=policies.allow_external_links, regions=regions,
                              **prediction_options)
    try:
        table = _resolve_regions(preds, regions)
        truth_source = _open_truth(truth, table, truth_dataset, policies.allow_external_links)
    except BaseException:
        preds.close()
        raise
    return preds, table, truth_source, check_structure(preds, truth_source, table, policies, batch_size)


def batch_bounds(start: int, stop: int, batch_size: int) -> list:
    """``(i, j)`` of consecutive batches of at most ``batch_size`` rows covering ``start..stop``."""
    return [(i, min(i + batch_size, stop)) for i in range(start, stop, batch_size)]


def iter_batches(preds, truth, batch_size: int, start: int = 0, stop: Optional[int] = None,
                 prepare: Optional[Callable] = None):
    """``(i, j, (logits, logcounts), observed)`` for consecutive batches of rows ``start..stop`` (default:
    all); the next batch is read in a background thread while the caller computes the current one.

    With ``prepare``, the thread also runs ``prepare(i, (logits, logcounts), observed)`` and yields
    ``(i, j, prepared)``: checks and conversions overlap the computation too."""
    bounds = batch_bounds(start, preds.n if stop is None else stop, batch_size)

    def read(bound):
        i, j = bound
        if prepare is None:
            return i, j, preds.read(i, j), truth.read(i, j)
        return i, j, prepare(i, preds.read(i, j), truth.read(i, j))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bpnet-eval-read") as pool:
        pending = pool.submit(read, bounds[0]) if bounds else None
        for k in range(len(bounds)):
            batch = pending.result()
            pending = pool.submit(read, bounds[k + 1]) if k + 1 < len(bounds) else None
            yield batch


def read_open_rows(preds, truth, rows: Sequence[int]):
    """Logits ``(k, S, L)``, log counts ``(k, T)`` and observed counts ``(k, S, L)`` of the regions at ``rows``
    from open sources."""
    parts = [(preds.read(int(r), int(r) + 1), truth.read(int(r), int(r) + 1)) for r in rows]
    return (np.concatenate([p[0][0] for p in parts]), np.concatenate([p[0][1] for p in parts]),
            np.concatenate([p[1] for p in parts]))


def read_rows(predictions, truth, regions, rows: Sequence[int], truth_dataset: Optional[str] = None,
              policies: Optional[Policies] = None, **prediction_options):
    """``read_open_rows`` from the files opened again (for figures; never the whole N x S x L), with the same
    chromosome names and off-end policy as the scoring run."""
    preds, _, truth_source, _ = open_sources(predictions, truth, regions, truth_dataset=truth_dataset,
                                             policies=policies, **prediction_options)
    try:
        return read_open_rows(preds, truth_source, rows)
    finally:
        preds.close()
        truth_source.close()


def default_read_workers(n_batches: int) -> int:
    """Reading processes: half the allotted CPUs (the rest compute), at most 4; none for a single batch or a
    single CPU."""
    cpus = allotted_cpus()
    return 0 if n_batches < 2 or cpus < 2 else min(MAX_READ_WORKERS, cpus // 2)


@dataclass
class Inputs:
    """The open, validated sources of a run and the rows it scores.

    ``observed`` answers ``read(i, j)`` for ``batches()`` (the truth source itself, or worker processes
    reading it ahead); ``read_rows(rows)`` reads a few regions again from the files (for figures).
    """

    preds: object
    regions: Optional[Regions]
    truth: object
    findings: Findings
    policies: Policies
    rows: Tuple[int, int]
    batch_size: int
    observed: object
    read_rows: Optional[Callable] = None
    partial: bool = False  # only ``rows`` of the regions were asked for (one shard)

    @property
    def read_workers(self) -> int:
        """Processes reading ahead (0: a thread of this process reads)."""
        return getattr(self.observed, "workers", 0)

    def batches(self, prepare: Optional[Callable] = None):
        """``iter_batches`` over ``rows``, the observed counts from ``observed``."""
        return iter_batches(self.preds, self.observed, self.batch_size, *self.rows, prepare=prepare)


@contextmanager
def open_inputs(predictions, truth, regions=None, *, truth_dataset: Optional[str] = None,
                policies: Optional[Policies] = None, batch_size: int = 1024, rows: Optional[Tuple[int, int]] = None,
                read_workers: Optional[int] = None, read_ahead_mb: int = 256, **prediction_options):
    """Open and validate the inputs (raising the first problem found) and start reading ahead.

    ``read_workers``: processes reading the observed bigWigs ahead (default: ``default_read_workers``; 0:
    a thread of this process), filling at most ``read_ahead_mb`` of shared memory ahead of the computation.
    Processes are used only where ``fork`` is safe (see ``bpnet_eval.workers``).
    Everything is closed, and the workers stopped, when the block ends.
    """
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}")
    if read_workers is not None and read_workers < 0:
        raise UsageError(f"--read-workers must be 0 or more, not {read_workers}")
    if read_ahead_mb < 0:
        raise UsageError(f"--read-ahead-mb must be 0 or more, not {read_ahead_mb}")
    policies = policies or Policies()
    return_batch_memory()  # before any worker is forked, so that the workers keep the setting
    preds, table, truth_source, findings = open_sources(predictions, truth, regions, truth_dataset=truth_dataset,
                                                        policies=policies, batch_size=batch_size, **prediction_options)
    observed = truth_source
    try:
        findings.raise_first()
        start, stop = rows if rows is not None else (0, preds.n)
        if not 0 <= start <= stop <= preds.n:
            raise UsageError(f"rows {start}..{stop} are not within the {preds.n} regions of {preds.path}")
        bounds = batch_bounds(start, stop, batch_size)
        workers = default_read_workers(len(bounds)) if read_workers is None else read_workers
        if workers and isinstance(truth_source, BigWigTruth) and len(bounds) > 1 and fork_is_safe():
            observed = ProcessReadAhead(truth_source, bounds, preds.length, workers, memory=read_ahead_mb << 20)
        reopen = partial(read_rows, predictions, truth, regions, truth_dataset=truth_dataset, policies=policies,
                         **prediction_options)

        def reread(rows):  # from the open sources while they are open
            return read_open_rows(preds, truth_source, rows) if is_open else reopen(rows)

        is_open = True
        yield Inputs(preds, table, truth_source, findings, policies, (start, stop), batch_size, observed, reread,
                     rows is not None)
    finally:
        is_open = False
        if observed is not truth_source:
            observed.close()
        preds.close()
        truth_source.close()
