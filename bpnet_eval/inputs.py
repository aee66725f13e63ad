"""The inputs of a run, opened and validated, and the batches read from them (no torch here).

``open_inputs(job)`` opens the predictions, the regions and the observed tracks, validates their
structure, and starts reading ahead (in forked worker processes where that is safe); the pipeline
then scores ``Inputs.batches()``. Nothing here imports torch, so the pipeline can fork the readers
before it imports torch.
"""

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .environment import allotted_cpus, fork_is_safe
from .errors import UsageError
from .input_files import reading
from .options import READ_AHEAD_MB, Job, Policies, ReadOptions, batch_regions
from .regions import Regions, read_regions
from .sources import PredictionSource, TruthSource, open_predictions, open_truth
from .sources.bigwig import share_run_memory
from .validate import Findings, check_structure
from .workers import ForkedCall, ProcessReadAhead

MAX_READ_WORKERS = 4


READ_FIX = "check that the file is complete and not damaged; re-create it if it is"


def _resolve_regions(preds: PredictionSource, regions, read: ReadOptions) -> Optional[Regions]:
    """The windows scored: stored in the predictions, a table, or region files read as the options and the
    predictions' own conventions say (window centre, bpnet-lite's index mask)."""
    if regions is None or preds.reads_own_windows:
        if read.chroms is not None and regions is None:
            raise UsageError("--chroms filters the rows of --regions files; give the region files with --regions")
        return preds.regions()
    if isinstance(regions, Regions):
        return regions
    options = {**read.region_options, "length": preds.length}
    options["window_center"] = options["window_center"] or preds.window_center
    return read_regions(regions, kept=preds.kept_mask, mask_path=preds.mask_path, **options)


def read_predictions(preds: PredictionSource, i: int, j: int):
    """``preds.read(i, j)``; an unexpected error names the predictions file (InputError)."""
    with reading(preds.path.split(","), f"regions {i + 1}..{j} of the predictions", READ_FIX):
        return preds.read(i, j)


def read_observed(truth, i: int, j: int, paths: Sequence[str]):
    """``truth.read_with_work(i, j)`` (a truth source, or processes reading it ahead: the counts, and what those
    computed from them or None); an unexpected error names the TRUTH files ``paths`` (InputError)."""
    with reading(paths, f"regions {i + 1}..{j} of the observed counts", READ_FIX):
        return truth.read_with_work(i, j)


def open_sources(predictions, truth, regions=None, read: Optional[ReadOptions] = None,
                 batch_size: Optional[int] = None):
    """Open the predictions, the regions and the truth, and validate their structure (nothing read yet; a batch's
    memory as ``batch_regions(batch_size, S, L)`` regions).

    Returns ``(preds, regions or None, truth, findings)``, the truth reading as validation planned; the caller
    raises or lists ``findings.problems`` and closes both sources.
    """
    read = read or ReadOptions()
    policies = read.policies
    preds = open_predictions(predictions, regions, allow_external_links=policies.allow_external_links,
                             **read.prediction_options)
    try:
        table = _resolve_regions(preds, regions, read)
        truth_source = open_truth(truth, table, read.truth_dataset, policies.allow_external_links)
    except BaseException:
        preds.close()
        raise
    try:
        findings, plan = check_structure(preds, truth_source, table, policies,
                                         batch_regions(batch_size, preds.n_tracks, preds.length))
    except BaseException:
        preds.close()
        truth_source.close()
        raise
    return preds, table, truth_source.planned(plan), findings


def batch_bounds(start: int, stop: int, batch_size: int) -> list:
    """``(i, j)`` of consecutive batches of at most ``batch_size`` rows covering ``start..stop``."""
    return [(i, min(i + batch_size, stop)) for i in range(start, stop, batch_size)]


# Predictions (logits and what ``logits_work`` gives on them) are read ahead of the batch being checked, in as many
# bytes of logits as the observed batches read ahead (``--read-ahead-mb``) and this many batches at most: the first
# batch waits for the observed tracks' first decoding (a bigWig decoded whole: ~0.4 s per track at 100k regions), and
# the predictions of the batches after it are read and worked on meanwhile.
MAX_PREDICTIONS_AHEAD = 16


def predictions_ahead(preds: PredictionSource, batch_size: int, memory: int = READ_AHEAD_MB << 20) -> int:
    """Batches of predictions read ahead: as many as ``memory`` bytes of float32 logits hold (1 to
    ``MAX_PREDICTIONS_AHEAD``)."""
    batch_bytes = max(1, batch_size * preds.n_tracks * preds.length * 4)
    return max(1, min(MAX_PREDICTIONS_AHEAD, memory // batch_bytes))


def iter_batches(preds: PredictionSource, truth, batch_size: int, start: int = 0, stop: Optional[int] = None,
                 prepare: Optional[Callable] = None, truth_paths: Optional[Sequence[str]] = None,
                 logits_work: Optional[Callable] = None, memory: int = READ_AHEAD_MB << 20):
    """``(i, j, (logits, logcounts), observed)`` for consecutive batches of rows ``start..stop`` (default:
    all); the next batch is read in a background thread while the caller computes the current one, and the
    predictions of the batches after it in another (``predictions_ahead`` of them, in ``memory`` bytes).

    With ``prepare``, the thread also runs ``prepare(i, (logits, logcounts), observed, early, worked)`` and yields
    ``(i, j, prepared)``: checks and conversions overlap the computation too; ``early`` is ``logits_work(logits)``
    (None without it), done where the predictions are read ahead, and ``worked`` what the processes reading ahead
    computed from the counts (``open_inputs``' ``batch_work``; else None). An unexpected error while a batch is read
    names the file (``truth_paths``: the TRUTH files, default ``truth.paths``)."""
    bounds = batch_bounds(start, preds.n if stop is None else stop, batch_size)
    paths = truth.paths if truth_paths is None else truth_paths

    def predicted(k):
        i, j = bounds[k]
        predictions = read_predictions(preds, i, j)
        return predictions, None if logits_work is None else logits_work(predictions[0])

    ahead = predictions_ahead(preds, batch_size, memory)
    predicting = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bpnet-eval-predictions")
    pending_predictions = [predicting.submit(predicted, k) for k in range(min(ahead, len(bounds)))]

    def read(k):
        i, j = bounds[k]
        predictions, early = pending_predictions[k].result()
        pending_predictions[k] = None  # the batch's arrays go with it
        if k + ahead < len(bounds):
            pending_predictions.append(predicting.submit(predicted, k + ahead))
        observed, worked = read_observed(truth, i, j, paths)
        if prepare is None:
            return i, j, predictions, observed
        return i, j, prepare(i, predictions, observed, early, worked)

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bpnet-eval-read") as pool:
            pending = pool.submit(read, 0) if bounds else None
            for k in range(len(bounds)):
                batch = pending.result()
                pending = pool.submit(read, k + 1) if k + 1 < len(bounds) else None
                yield batch
    finally:
        predicting.shutdown(wait=True, cancel_futures=True)  # a run stopped early: no more batches read


def read_open_rows(preds: PredictionSource, truth: TruthSource, rows: Sequence[int]):
    """Logits ``(k, S, L)``, log counts ``(k, T)`` and observed counts ``(k, S, L)`` of the regions at ``rows``
    from open sources."""
    parts = [(read_predictions(preds, int(r), int(r) + 1), read_observed(truth, int(r), int(r) + 1, truth.paths)[0])
             for r in rows]
    return (np.concatenate([p[0][0] for p in parts]), np.concatenate([p[0][1] for p in parts]),
            np.concatenate([p[1] for p in parts]))


def read_rows(job: Job, rows: Sequence[int]):
    """``read_open_rows`` from the files of ``job`` opened again (never the whole N x S x L), with the same
    chromosome names and off-end policy as the scoring run."""
    preds, _, truth_source, _ = open_sources(job.predictions, job.truth, job.regions, job.read)
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


def prediction_read_ahead(bounds: Sequence[Tuple[int, int]], length: int, workers: int, read_ahead_mb: int):
    """``read_ahead(source, length=length, dtype=float32, processes=None)`` for ``PredictionSource.will_read``:
    processes, forked then, reading the batches ``bounds`` of ``source`` (values ``(b, S, length)`` of ``dtype``) ahead:
    ``processes`` where given, else ``workers``, or one per track where there are more tracks and CPUs (each file then
    read by a process of its own: 52.8k windows of two predicted bigWigs read block by block on 2 CPUs, 5.3 s with
    one process, 4.2-4.5 s with two, 7.1 s in this process)."""
    def read_ahead(source, length: int = length, dtype=np.float32, processes: Optional[int] = None):
        count = processes or max(workers, min(source.n_tracks, allotted_cpus()))
        return ProcessReadAhead(source, bounds, length, count, held=1, memory=read_ahead_mb << 20, dtype=dtype)

    return read_ahead


@dataclass
class Inputs:
    """The open, validated sources of a run and the rows it scores.

    ``observed`` answers ``read(i, j)`` for ``batches()`` (the truth source itself, or ``read_workers``
    processes reading it ahead).
    """

    preds: PredictionSource
    regions: Optional[Regions]
    truth: TruthSource
    findings: Findings
    policies: Policies
    rows: Tuple[int, int]
    batch_size: int
    observed: object
    read_workers: int = 0  # processes reading ahead (0: a thread of this process reads)
    partial: bool = False  # only ``rows`` of the regions were asked for (one shard)
    read_ahead: int = READ_AHEAD_MB << 20  # bytes of predictions read ahead (``iter_batches``' ``memory``)

    def batches(self, prepare: Optional[Callable] = None, logits_work: Optional[Callable] = None):
        """``iter_batches`` over ``rows``, the observed counts from ``observed``."""
        return iter_batches(self.preds, self.observed, self.batch_size, *self.rows, prepare=prepare,
                            truth_paths=self.truth.paths, logits_work=logits_work, memory=self.read_ahead)

    def read_rows(self, rows: Sequence[int]):
        """A few regions read again from the open sources (``read_open_rows``)."""
        return read_open_rows(self.preds, self.truth, rows)


@contextmanager
def open_inputs(job: Job, batch_work: Optional[Callable[[np.ndarray], object]] = None,
                batch_work_bytes: Optional[Callable[[tuple], int]] = None,
                batch_work_merge: Optional[Callable[[list, list, int, int], object]] = None):
    """Open and validate the inputs of ``job`` (raising the first problem found) and start reading ahead.

    ``job.run.read_workers``: processes reading the observed bigWigs ahead (default: ``default_read_workers``;
    0: a thread of this process), filling at most ``job.run.read_ahead_mb`` of shared memory ahead of the
    computation. Processes are used only for sources that allow it and where ``fork`` is safe (see
    ``bpnet_eval.workers``); where each reads whole batches, they also compute ``batch_work(observed)`` of each
    (``Inputs.batches`` hands it to ``prepare``; ``batch_work_bytes(shape)``: the most bytes its value takes pickled),
    and where each reads some tracks, ``batch_work`` of its tracks, joined by ``batch_work_merge(values, track
    groups, S, L)``.
    Everything is closed, and the workers stopped, when the block ends.
    """
    run = job.run
    preds, table, truth_source, findings = open_sources(job.predictions, job.truth, job.regions, job.read,
                                                        run.batch_size)
    observed = truth_source
    share_run_memory(preds.bigwig_readers() + truth_source.bigwig_readers(), run.bigwig_memory_mb << 20)
    try:
        findings.raise_first()
        start, stop = job.rows if job.rows is not None else (0, preds.n)
        if not 0 <= start <= stop <= preds.n:
            raise UsageError(f"rows {start}..{stop} are not within the {preds.n} regions of {preds.path}")
        truth_source.will_read(start, stop)
        batch_size = batch_regions(run.batch_size, preds.n_tracks, preds.length)
        bounds = batch_bounds(start, stop, batch_size)
        workers = default_read_workers(len(bounds)) if run.read_workers is None else run.read_workers
        processes = workers > 0 and len(bounds) > 1 and fork_is_safe()
        preds.will_read(start, stop, ForkedCall if fork_is_safe() else None,
                        prediction_read_ahead(bounds, preds.length, workers, run.read_ahead_mb) if processes else None)
        if workers and truth_source.forkable and len(bounds) > 1 and fork_is_safe():
            if workers < truth_source.n_tracks and truth_source.reads_blocks():  # files read block by block: a
                workers = max(workers, min(truth_source.n_tracks, allotted_cpus()))  # process each, or a CPU each
            observed = ProcessReadAhead(truth_source, bounds, preds.length, workers, memory=run.read_ahead_mb << 20,
                                        work=batch_work, work_bytes=batch_work_bytes, merge_work=batch_work_merge)
            truth_source.will_read(start, start)  # the processes read the run's rows; this one a few (examples)
        yield Inputs(preds, table, truth_source, findings, job.read.policies, (start, stop), batch_size,
                     observed, observed.workers if observed is not truth_source else 0, job.rows is not None,
                     run.read_ahead_mb << 20)
    finally:
        if observed is not truth_source:
            observed.close()
        preds.close()
        truth_source.close()
