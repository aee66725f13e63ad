"""The streaming loop: inputs → batches → per-region metrics → summary.

``score`` is the Python API behind ``bpnet-eval score``; it takes paths or arrays and returns
per-region values and the summary. ``score_inputs`` scores inputs already opened with
``bpnet_eval.inputs.open_inputs`` (the CLI opens them, and starts reading, before torch is imported).
"""

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from . import __version__
from .compute import DTYPES, BatchComputer, compute_threads, resolve_device
from .errors import UsageError
from .inputs import NO_REGIONS, Inputs, open_inputs
from .presets import MetricPlan, make_plan, preset_files
from .regions import Regions
from .sources.predicted_bigwig import BigWigPredictions, check_zero_mass
from .summary import summarize
from .validate import Findings, Policies, ValueScreen


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


def default_track_names(n_tracks: int) -> list:
    """``plus, minus`` for two tracks (stranded data), else ``track0, track1, ...``."""
    return ["plus", "minus"] if n_tracks == 2 else [f"track{s}" for s in range(n_tracks)]


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



def score_inputs(inputs: Inputs, *, count_loss_weight: float = 1.0, device: str = "auto", dtype: str = "float64",
                 track_names: Optional[Sequence[str]] = None, progress: Optional[Callable[[int, int], None]] = None,
                 metrics: str = "default", preset: Optional[str] = None, smooth: str = "none",
                 smooth_sigma: float = 7.0, smooth_width: int = 81, seed: int = 0) -> ScoreResult:
    """Score inputs opened by ``open_inputs`` (see ``score`` for the parameters and the result)."""
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be float32 or float64, not '{dtype}'")
    torch_device = resolve_device(device)
    plan = make_plan(metrics, preset, smooth, smooth_sigma, smooth_width, seed)
    preds, table, truth_source, findings = inputs.preds, inputs.regions, inputs.truth, inputs.findings
    names = list(track_names) if track_names else default_track_names(preds.n_tracks)
    if len(names) != preds.n_tracks:
        raise UsageError(f"--track-names gives {len(names)} name(s) for {preds.n_tracks} track(s)")
    chunks = []
    computer = BatchComputer(count_loss_weight, names, torch_device, dtype, plan)
    screen = ValueScreen(findings, preds, truth_source, table, inputs.policies)

    def screened(i, predicted, observed):  # in the reading thread, overlapping the computation
        logits, logcounts = predicted
        skip = screen.screen(i, logits, logcounts, observed)
        if skip.any():  # not scored: zeros in, NaN out
            logits, logcounts = np.where(skip[:, None, None], 0, logits), np.where(skip[:, None], 0, logcounts)
        if isinstance(preds, BigWigPredictions):  # zero predicted mass where counts were observed
            check_zero_mass(logits, observed, table, i, preds.paths)
        return skip, computer.prepare(logits, logcounts, observed)

    with torch.inference_mode(), compute_threads(torch_device, 1 + inputs.read_workers):
        for i, j, (skip, tensors) in inputs.batches(screened):
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
                "batch_size": inputs.batch_size, "track_names": names, "metrics": plan.describe(),
                "bpnet_eval_version": __version__}
    sources = {"predictions": preds.describe(), "truth": truth_source.describe(), "regions": table.source}
    start, stop = inputs.rows
    if inputs.partial:
        partial_state = {"rows": (start, stop), "n_regions": preds.n, "findings": findings,
                         "structural_warnings": findings.warnings[:value_warnings_from],
                         "non_integer": screen.non_integer, "settings": settings, "inputs": sources}
        return ScoreResult(table.subset(slice(start, stop)), columns, None, names, partial=partial_state)
    summary, files = summarize_scores(columns, table, findings, settings, sources, plan, names,
                                      computer.pooled_auprc)
    return ScoreResult(table, columns, summary, names, inputs.read_rows, files)


def score(predictions, truth, regions=None, *, count_loss_weight: float = 1.0, device: str = "auto",
          batch_size: int = 1024, dtype: str = "float64", track_names: Optional[Sequence[str]] = None,
          logits_dataset: Optional[str] = None, logcounts_dataset: Optional[str] = None,
          profile_kind: Optional[str] = None, head: Optional[int] = None, truth_dataset: Optional[str] = None,
          progress: Optional[Callable[[int, int], None]] = None, policies: Optional[Policies] = None,
          metrics: str = "default", preset: Optional[str] = None, smooth: str = "none", smooth_sigma: float = 7.0,
          smooth_width: int = 81, seed: int = 0, pred_pseudocount: float = 0.0,
          pred_logcounts: str = "log", rows: Optional[Tuple[int, int]] = None,
          read_workers: Optional[int] = None, read_ahead_mb: int = 256) -> ScoreResult:
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
    read_workers, read_ahead_mb : int, optional
        Processes reading the observed bigWigs ahead (default: half the CPUs, at most 4; 0: a thread), and
        the shared memory they fill ahead of the computation (at least 2 batches per worker).

    Returns
    -------
    result : ScoreResult
        ``columns`` maps each per-region column to a float64 array in input order; ``summary`` is
        the dictionary written to ``summary.json``.
    """
    with open_inputs(predictions, truth, regions, truth_dataset=truth_dataset, policies=policies,
                     batch_size=batch_size, rows=rows, read_workers=read_workers, read_ahead_mb=read_ahead_mb,
                     logits_dataset=logits_dataset,
                     logcounts_dataset=logcounts_dataset, profile_kind=profile_kind, head=head,
                     pred_pseudocount=pred_pseudocount, pred_logcounts=pred_logcounts) as inputs:
        return score_inputs(inputs, count_loss_weight=count_loss_weight, device=device, dtype=dtype,
                            track_names=track_names, progress=progress, metrics=metrics, preset=preset,
                            smooth=smooth, smooth_sigma=smooth_sigma, smooth_width=smooth_width, seed=seed)
