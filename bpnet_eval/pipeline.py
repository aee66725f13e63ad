"""The streaming loop: sources → batches → per-region metrics → summary.

``score`` is the Python API behind ``bpnet-eval score``; it takes paths or arrays and
returns per-region values and the summary.
"""

import ctypes
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from . import __version__
from .environment import THREAD_VARIABLES, allotted_cpus
from .errors import UsageError
from .losses import log1p_squared_error, mnll_per_region
from .regions import Regions, read_region_file
from .sources.predicted_bigwig import BigWigPredictions, bigwig_prediction_paths, check_zero_mass
from .sources.npz import NpzPredictions, npz_prediction_paths
from .sources.predictions import ArrayPredictions, HDF5Predictions
from .sources.tracks import ArrayTruth, open_truth
from .metrics.profile import profile_metrics
from .presets import MetricPlan, PooledAuprc, make_plan, preset_files
from .summary import summarize
from .validate import Findings, Policies, ValueScreen, check_structure

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class ScoreResult:
    """Per-region values (``columns``, in input order), the regions and the summary."""

    regions: Regions
    columns: dict
    summary: dict
    track_names: list = field(default_factory=list)
    # ``read_rows(rows) -> (logits, logcounts, observed)``: a few regions read again from the sources.
    read_rows: Optional[Callable] = None
    # A preset's own summary files: ``{file name: text}``.
    files: dict = field(default_factory=dict)
    # Scoring one shard (``rows``): what ``shards.merge`` needs to finish the report; ``summary`` is None.
    partial: Optional[dict] = None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → the GPU when torch sees one, else the CPU; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device '{name}' is not a device; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: torch sees no GPU here; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: torch sees {torch.cuda.device_count()} GPU(s); use cuda:0..")
    elif device.type != "cpu":
        raise UsageError(f"--device '{name}' is not supported; use auto, cpu, cuda or cuda:N")
    return device


def default_track_names(n_tracks: int) -> list:
    """``plus, minus`` for two tracks (stranded data), else ``track0, track1, ...``."""
    return ["plus", "minus"] if n_tracks == 2 else [f"track{s}" for s in range(n_tracks)]


def compute_batch(logits, logcounts, observed, count_loss_weight: float, track_names: Sequence[str],
                  plan: Optional[MetricPlan] = None, first_row: int = 0) -> dict:
    """Per-region columns of one batch, as numpy arrays (float64), in batch order: the seed losses, the
    per-track MNLL, then the profile metrics of ``plan`` (``first_row``: the global row of the batch's first
    region, which keys the shuffled baselines). The computation runs in ``logcounts``' dtype; ``logits`` and
    ``observed`` may come as stored (float32)."""
    compute_dtype = logcounts.dtype
    profile_mnll, per_track_mnll, track_totals = mnll_per_region(logits, observed, compute_dtype)
    target = track_totals.sum(dim=-1, keepdim=True) if logcounts.shape[-1] == 1 else track_totals
    count_loss = log1p_squared_error(logcounts, target)
    columns = {"observed_counts": track_totals.sum(dim=-1)}
    if logcounts.shape[-1] == 1:
        columns["predicted_logcounts"] = logcounts[:, 0]
    else:
        for s, name in enumerate(track_names):
            columns[f"observed_counts_{name}"] = target[:, s]
            columns[f"predicted_logcounts_{name}"] = logcounts[:, s]
    columns.update(profile_mnll=profile_mnll, count_log1p_mse=count_loss,
                   mixture_loss=profile_mnll + count_loss_weight * count_loss)
    if len(track_names) > 1:
        for s, value in enumerate(per_track_mnll.unbind(-1)):
            columns[f"profile_mnll_{track_names[s]}"] = value
    if plan is not None and plan.profile_names:
        rows = torch.arange(first_row, first_row + logits.shape[0], device=logits.device)
        columns.update(profile_metrics(logits.to(compute_dtype), observed.to(compute_dtype),
                                       names=plan.profile_names, track_names=track_names, rows=rows,
                                       **plan.profile_options))
    return {name: value.detach().to("cpu", torch.float64).numpy() for name, value in columns.items()}


class BatchComputer:
    """Numpy batches → per-region columns (``compute_batch``) on ``device`` in ``dtype``.

    ``prepare`` turns a batch's numpy arrays into tensors; ``score``'s reading thread calls it, so on a
    GPU the host copy is pinned there and the transfer (float32, half the bytes) overlaps the compute.
    """

    def __init__(self, count_loss_weight: float = 1.0, track_names: Sequence[str] = ("plus", "minus"),
                 device="cpu", dtype: str = "float64", plan: Optional[MetricPlan] = None):
        self.plan = plan
        self.pooled_auprc = PooledAuprc() if plan is not None and plan.pooled_auprc else None
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.dtype = DTYPES[dtype]
        self.count_loss_weight = count_loss_weight
        self.track_names = list(track_names)

    def prepare(self, *arrays):
        """CPU: tensors sharing the arrays' memory. GPU: pinned host copies as stored (float32 crosses the
        bus, then is converted on the device), so ``__call__``'s non-blocking transfer overlaps."""
        tensors = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
        if self.device.type == "cuda":
            return tuple(t.pin_memory() for t in tensors)
        return tensors

    def __call__(self, logits, logcounts, observed, first_row: int = 0) -> dict:
        """Per-region columns (float64 numpy) of one batch given as arrays or prepared tensors."""
        if not torch.is_tensor(logits):
            logits, logcounts, observed = self.prepare(logits, logcounts, observed)
        # Logits and counts keep their stored dtype (float32 holds counts exactly): the MNLL converts the
        # logits chunk by chunk and reads the counts sparsely; ``logcounts`` carries the compute dtype.
        logits, observed = (t.to(self.device, non_blocking=True) for t in (logits, observed))
        logcounts = logcounts.to(self.device, non_blocking=True).to(self.dtype)
        if self.pooled_auprc is not None:
            self.pooled_auprc.update(observed.to(self.dtype), logits.to(self.dtype))
        return compute_batch(logits, logcounts, observed, self.count_loss_weight, self.track_names, self.plan,
                             first_row)


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
    if isinstance(truth, np.ndarray) or torch.is_tensor(truth):
        return ArrayTruth(np.asarray(truth))
    paths = [truth] if isinstance(truth, str) or hasattr(truth, "__fspath__") else list(truth)
    return open_truth(paths, regions, dataset, allow_external_links)


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


def iter_batches(preds, truth, batch_size: int, start: int = 0, stop: Optional[int] = None,
                 prepare: Optional[Callable] = None):
    """``(i, j, (logits, logcounts), observed)`` for consecutive batches of rows ``start..stop`` (default:
    all); the next batch is read in a background thread while the caller computes the current one.

    With ``prepare``, the thread also runs ``prepare(i, (logits, logcounts), observed)`` and yields
    ``(i, j, prepared)``: checks and conversions overlap the computation too."""
    stop = preds.n if stop is None else stop
    bounds = [(i, min(i + batch_size, stop)) for i in range(start, stop, batch_size)]

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


def read_rows(predictions, truth, regions, rows: Sequence[int], truth_dataset: Optional[str] = None,
              policies: Optional[Policies] = None, **prediction_options):
    """Logits ``(k, S, L)``, log counts ``(k, T)`` and observed counts ``(k, S, L)`` of the regions at
    ``rows`` only, read again from the sources (for figures; never the whole N x S x L), with the same
    chromosome names and off-end policy as the scoring run."""
    preds, _, truth_source, _ = open_sources(predictions, truth, regions, truth_dataset=truth_dataset,
                                             policies=policies, **prediction_options)
    try:
        parts = [(preds.read(int(r), int(r) + 1), truth_source.read(int(r), int(r) + 1)) for r in rows]
    finally:
        preds.close()
        truth_source.close()
    return (np.concatenate([p[0][0] for p in parts]), np.concatenate([p[0][1] for p in parts]),
            np.concatenate([p[1] for p in parts]))


NO_REGIONS = "none (row numbers)"


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
BATCH_MMAP_THRESHOLD = 8 << 20


@lru_cache(maxsize=None)
def return_batch_memory() -> bool:
    """Fix glibc's mmap threshold at 8 MB, so that the peak RSS stays flat in the number of batches.

    glibc otherwise raises its threshold after each large free, and serves ever larger blocks from
    per-thread heaps that fragment. 8 MB rather than less: below it, batch-sized arrays and torch
    temporaries are reused from the heap; at 1 MB every one of them was a fresh mmap whose page faults
    took 4.9 s of system time in an 8.4 s run of the 100k benchmark (6.1 s at 8 MB, RSS still flat).
    A no-op (False) off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, BATCH_MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


@contextmanager
def compute_threads(device: torch.device):
    """On the CPU, leave one core to the reading thread: torch's threads spin-wait, and sharing
    every core with the reader slows both (restored afterwards)."""
    threads = torch.get_num_threads()
    cores = allotted_cpus()
    explicit = any(os.environ.get(name, "").strip() for name in THREAD_VARIABLES)
    if device.type == "cpu" and not explicit and threads >= cores > 1:
        torch.set_num_threads(cores - 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def summarize_scores(columns: dict, table: Regions, findings: Findings, settings: dict, inputs: dict,
                     plan: MetricPlan, track_names, pooled_auprc=None):
    """``(summary, preset files)`` from every region's columns (input order) and the validation findings."""
    outcome = findings.report(None if table.source == NO_REGIONS else table)
    scored = ~findings.skip_mask(len(table))
    kept = {name: values[scored] for name, values in columns.items()}
    scored_peak = None if table.peak is None else table.peak[scored]
    summary = summarize(kept, scored_peak, settings, inputs)
    summary.update(outcome)
    if pooled_auprc is not None:
        summary["profile_auprc"] = pooled_auprc.result()
    return summary, preset_files(plan, kept, summary, scored_peak, track_names)


def score(predictions, truth, regions=None, *, count_loss_weight: float = 1.0, device: str = "auto",
          batch_size: int = 1024, dtype: str = "float64", track_names: Optional[Sequence[str]] = None,
          logits_dataset: Optional[str] = None, logcounts_dataset: Optional[str] = None,
          profile_kind: Optional[str] = None, head: Optional[int] = None, truth_dataset: Optional[str] = None,
          progress: Optional[Callable[[int, int], None]] = None, policies: Optional[Policies] = None,
          metrics: str = "default", preset: Optional[str] = None, smooth: str = "none", smooth_sigma: float = 7.0,
          smooth_width: int = 81, seed: int = 0, pred_pseudocount: float = 0.0,
          pred_logcounts: str = "log", rows: Optional[Tuple[int, int]] = None) -> ScoreResult:
    """Score predictions against observed counts, region by region.

    Parameters
    ----------
    predictions : str, list of str, or (logits, logcounts)
        An HDF5 file in a known layout; counts-scale bigWigs, one per track (a list, or one string
        ``plus.bw,minus.bw``; needs ``regions``); or arrays: logits ``(N, L)``/``(N, S, L)`` and log
        counts ``(N,)``, ``(N, 1)`` or ``(N, S)``.
    truth : str, list of str, or array
        One bigWig per predicted track, one HDF5 file of counts, or an array ``(N, S, L)``.
    regions : str or Regions, optional
        BED / narrowPeak file or a Regions table; default: the coordinates stored with the predictions.
    count_loss_weight : float
        Weight of the count term in the mixture loss.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    batch_size : int
        Regions per batch.
    dtype : {"float64", "float32"}
        Precision of the computation.
    progress : callable(done, total), optional
        Called after every batch.
    metrics : str
        ``default`` (the seed losses and per-track MNLL), ``all``, or a comma list of profile metrics
        (``jsd_distance,norm_jsd,...``; see docs/metrics.md).
    preset : {"bpnet-lite", "chrombpnet", "bpnet"}, optional
        A peer's definitions, columns and summary file (``ScoreResult.files``).
    smooth, smooth_sigma, smooth_width : str, float, int
        Gaussian smoothing (``none``, ``predictions``, ``observed``, ``both``) of the profiles compared
        by the shape metrics (bpnet-lite's sigma 7, width 81).
    seed : int
        Seed of the shuffled baselines.
    pred_pseudocount, pred_logcounts : float, {"log", "log1p"}
        bigWig predictions only: added to every predicted value before normalising the profile; the
        predicted log count is ``ln(total)`` (``log``) or ``ln(1 + total)`` (``log1p``).
    policies : Policies, optional
        Windows past a chromosome end (``off_end``: error, skip, pad), non-finite predictions
        (``nonfinite``: error, skip), HDF5 external links (refused unless ``allow_external_links``).
    rows : (int, int), optional
        Score only rows ``start..stop`` (0-based, half-open): one shard. The result then holds those
        rows' columns, ``summary`` None and ``partial`` (see ``bpnet_eval.shards``).

    Returns
    -------
    result : ScoreResult
        ``columns`` maps each per-region column to a float64 array in input order; ``summary`` is
        the dictionary written to ``summary.json``.
    """
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be float32 or float64, not '{dtype}'")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, not {batch_size}")
    torch_device = resolve_device(device)
    return_batch_memory()
    plan = make_plan(metrics, preset, smooth, smooth_sigma, smooth_width, seed)
    policies = policies or Policies()
    preds, table, truth_source, findings = open_sources(
        predictions, truth, regions, truth_dataset=truth_dataset, policies=policies, batch_size=batch_size,
        logits_dataset=logits_dataset, logcounts_dataset=logcounts_dataset, profile_kind=profile_kind, head=head,
        pred_pseudocount=pred_pseudocount, pred_logcounts=pred_logcounts)
    try:
        findings.raise_first()
        names = list(track_names) if track_names else default_track_names(preds.n_tracks)
        if len(names) != preds.n_tracks:
            raise UsageError(f"--track-names gives {len(names)} name(s) for {preds.n_tracks} track(s)")
        chunks = []
        computer = BatchComputer(count_loss_weight, names, torch_device, dtype, plan)
        screen = ValueScreen(findings, preds, truth_source, table, policies)
        start, stop = rows if rows is not None else (0, preds.n)
        if not 0 <= start <= stop <= preds.n:
            raise UsageError(f"rows {start}..{stop} are not within the {preds.n} regions of {preds.path}")

        def screened(i, predicted, observed):  # in the reading thread, overlapping the computation
            logits, logcounts = predicted
            skip = screen.screen(i, logits, logcounts, observed)
            if skip.any():  # not scored: zeros in, NaN out
                logits, logcounts = np.where(skip[:, None, None], 0, logits), np.where(skip[:, None], 0, logcounts)
            if isinstance(preds, BigWigPredictions):  # zero predicted mass where counts were observed
                check_zero_mass(logits, observed, table, i, preds.paths)
            return skip, computer.prepare(logits, logcounts, observed)

        with torch.inference_mode(), compute_threads(torch_device):
            for i, j, (skip, tensors) in iter_batches(preds, truth_source, batch_size, start, stop, screened):
                chunks.append(computer(*tensors, first_row=i))
                for values in chunks[-1].values():
                    values[skip] = np.nan
                if progress:
                    progress(j, preds.n)
        value_warnings_from = len(findings.warnings)
        screen.finish()
        columns = {name: np.concatenate([c[name] for c in chunks]) if chunks else np.zeros(0)
                   for name in (chunks[0] if chunks else {})}
        if table is None:
            table = Regions(np.array(["."] * preds.n, dtype=object), np.zeros(preds.n), np.zeros(preds.n),
                            None, NO_REGIONS)
        settings = {"count_loss_weight": float(count_loss_weight), "device": str(torch_device), "dtype": dtype,
                    "batch_size": batch_size, "track_names": names, "metrics": plan.describe(),
                    "bpnet_eval_version": __version__}
        inputs = {"predictions": preds.describe(), "truth": truth_source.describe(), "regions": table.source}
        if rows is not None:
            partial_state = {"rows": (start, stop), "n_regions": preds.n, "findings": findings,
                             "structural_warnings": findings.warnings[:value_warnings_from],
                             "non_integer": screen.non_integer, "settings": settings, "inputs": inputs}
            return ScoreResult(table.subset(slice(start, stop)), columns, None, names, partial=partial_state)
        summary, files = summarize_scores(columns, table, findings, settings, inputs, plan, names,
                                          computer.pooled_auprc)
        reader = partial(read_rows, predictions, truth, regions, truth_dataset=truth_dataset, policies=policies,
                         logits_dataset=logits_dataset, logcounts_dataset=logcounts_dataset,
                         profile_kind=profile_kind, head=head, pred_pseudocount=pred_pseudocount,
                         pred_logcounts=pred_logcounts)
        return ScoreResult(table, columns, summary, names, reader, files)
    finally:
        preds.close()
        truth_source.close()
