"""The one scoring path: a ``Job`` → inputs opened → batches → per-region columns → summary → ``ScoreResult``.

``run_job`` is used by the CLI, the Python API (``score``) and shards alike. It alone decides the order that
keeps the run fast and safe: the inputs are opened and the reading processes forked first, and torch is
imported only then (so no child holds torch's threads, and the import overlaps the reading). ``check``
validates a job's inputs the way ``run_job`` does, collecting every problem instead of stopping.
"""

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from . import __version__
from .errors import BpnetEvalError, UsageError
from .examples import example_regions
from .groups import read_all_groups
from .inputs import Inputs, iter_batches, open_inputs, open_sources
from .metrics.pooled import PooledAuprc
from .options import Job, ReadOptions, RunOptions, ScoreOptions, batch_regions, split_options
from .presets import COUNT_TARGETS, MetricPlan, preset_files, preset_notes
from .regions import Regions
from .seed import SeedComputer, count_terms, count_terms_bytes, interleaved_count_terms
from .sources import input_conventions, unreadable_truth_bigwigs
from .summary import drop_nonfinite, summarize
from .validate import Findings, ValueScreen


@dataclass
class ScoreResult:
    """Per-region values (``columns``, in input order), the regions, the summary and what the report shows."""

    regions: Regions
    columns: dict
    summary: Optional[dict]
    track_names: list = field(default_factory=list)
    # A preset's own summary files: ``{file name: text}``.
    files: dict = field(default_factory=dict)
    # The example regions of the figures (``examples.example_regions``), None when there are none.
    examples: Optional[dict] = None
    # Region groups from ``--groups`` files (``groups.Grouping``, over every region in input order).
    groupings: list = field(default_factory=list)
    # Scoring one shard (``Job.rows``): what ``shards.merge`` needs to finish the report; ``summary`` is None.
    partial: Optional[dict] = None


def default_track_names(n_tracks: int) -> list:
    """``plus, minus`` for two tracks (stranded data), else ``track0, track1, ...``."""
    return ["plus", "minus"] if n_tracks == 2 else [f"track{s}" for s in range(n_tracks)]


def count_target_note(predictions: dict, count_target: str) -> Optional[str]:
    """The line saying that the producer trained its log counts on another target than the run scores against."""
    trained = predictions.get("trained_count_target")
    if trained is None or trained == count_target:
        return None
    formula = COUNT_TARGETS
    return (f"{predictions.get('path')}: {predictions.get('layout')} models are trained on log counts of "
            f"{formula[trained]}; scored against {formula[count_target]} (--count-target {count_target}): pass "
            f"--count-target {trained} to score them against their own target")


def summarize_scores(columns: dict, table: Regions, findings: Findings, settings: dict, inputs: dict,
                     plan: MetricPlan, track_names, pooled_auprc=None, groupings=()):
    """``(summary, preset files)`` from every region's columns (input order), the validation findings and the
    region groupings (over every region; summarised over the scored ones)."""
    outcome = findings.report(table)
    scored = ~findings.skip_mask(len(table))
    kept = {name: values[scored] for name, values in columns.items()}
    scored_peak = None if table.peak is None else table.peak[scored]
    summary = summarize(kept, scored_peak, settings, inputs, [g.subset(scored) for g in groupings])
    summary.update(outcome)
    if pooled_auprc is not None:
        summary["profile_auprc"] = pooled_auprc.result()
    summary["warnings"] += drop_nonfinite(summary)  # null, never inf or NaN, in summary.json
    return summary, preset_files(plan, kept, summary, scored_peak, track_names)


def screen_batch(screen: ValueScreen, i: int, logits, logcounts, observed, finite_logits=None, nonzero_observed=None,
                 non_integer_regions=None):
    """``(logits, logcounts, observed, skip)`` of one batch after ``screen``: the rows not scored (``skip``) hold
    zeros (zeros in, NaN out), so no non-finite value reaches the computation. ``finite_logits``: whether each
    region's logits are all finite, when already known; ``nonzero_observed``: every observed value that is not 0,
    when already gathered, and ``non_integer_regions`` (see ``ValueScreen.screen``)."""
    skip = screen.screen(i, logits, logcounts, observed, finite_logits, nonzero_observed, non_integer_regions)
    return (*zero_rows(skip, logits, logcounts, observed), skip)


def zero_rows(rows: np.ndarray, logits, logcounts, observed):
    """The three arrays with ``rows`` (a boolean mask) set to 0 (new arrays; the same ones when no row is)."""
    if not rows.any():
        return logits, logcounts, observed
    return (np.where(rows[:, None, None], 0, logits), np.where(rows[:, None], 0, logcounts),
            np.where(rows[:, None, None], 0, observed).astype(observed.dtype, copy=False))


def store_batch(columns: dict, batch: dict, first: int, total: int, skip: np.ndarray) -> None:
    """Copy one batch's columns into ``columns`` at rows ``first..`` (NaN at ``skip``), each column allocated once
    for all ``total`` rows at the first batch: no per-batch pieces are kept (small arrays left between the
    batches' big temporaries fragmented the heap: peak memory grew ~8 MB per batch) and none is concatenated."""
    for name, values in batch.items():
        if name not in columns:
            columns[name] = np.empty(total)
        rows = columns[name][first:first + len(values)]
        rows[...] = values
        rows[skip] = np.nan


def uses_seed_computer(scoring: ScoreOptions, run: RunOptions) -> bool:
    """Whether a run computes with ``seed.SeedComputer`` (numpy on the CPU, no torch): a plan of the seed losses
    and at most the pooled auPRC (``--preset bpnet``), in float64, on ``--device cpu`` or ``auto``. ``auto`` takes it
    even where a GPU is: importing a CUDA build of torch alone took 3-5 s on an H200 node, more than the whole CPU
    run of 100k regions there (2.0-2.6 s, vs 5.9-6.8 s on the GPU; docs/performance.md)."""
    return not scoring.plan.needs_torch and numpy_seed_likely(scoring, run)


def numpy_seed_likely(scoring: ScoreOptions, run: RunOptions) -> bool:
    """Whether numpy will likely compute the run's seed losses (float64 on the CPU: ``--device cpu``, or ``auto``
    on a machine without a GPU), so that the reading processes compute their terms of the counts (unused where
    ``auto`` finds a GPU)."""
    return scoring.dtype == "float64" and run.device in ("cpu", "auto")


def make_computer(scoring: ScoreOptions, track_names, run: RunOptions, readers: int):
    """``(computer, device name, context to compute in)``: ``seed.SeedComputer`` (numpy; torch is never imported)
    where the plan needs only the seed losses and the pooled auPRC, in float64, on ``--device cpu`` or ``auto``
    (``uses_seed_computer``); else ``compute.BatchComputer`` (imports torch) with torch's threads set
    beside ``readers`` reading processes, and on the CPU the pieces of the metrics beyond the seed losses computed
    by as many threads as the run has (``compute.piece_threads``: ``run.threads``, else torch's)."""
    plan = scoring.plan
    if uses_seed_computer(scoring, run):
        pooled = PooledAuprc() if plan.pooled_auprc else None
        return SeedComputer(scoring.count_loss_weight, track_names, plan.count_target, pooled), "cpu", nullcontext()
    import torch

    from .compute import BatchComputer, compute_threads, piece_threads, resolve_device

    device = resolve_device(run.device)
    computer = BatchComputer(scoring.count_loss_weight, track_names, device, scoring.dtype, plan)

    @contextmanager
    def computing():
        threads = run.threads if run.threads is not None else torch.get_num_threads()
        with torch.inference_mode(), compute_threads(device, 1 + readers, run.threads), \
                piece_threads(computer, threads):
            yield

    return computer, str(device), computing()


def score_inputs(inputs: Inputs, scoring: ScoreOptions, run: RunOptions,
                 progress: Optional[Callable[[int, int], None]] = None,
                 on_columns: Optional[Callable[[dict, Optional[dict], list], None]] = None) -> ScoreResult:
    """Score inputs opened by ``open_inputs`` (importing torch only where the plan needs it; see ``run_job``).
    ``on_columns(columns, examples, track_names)`` is called once every column is final, before the summary is made
    (a whole run only)."""
    plan = scoring.plan
    preds, table, truth_source, findings = inputs.preds, inputs.regions, inputs.truth, inputs.findings
    groupings = read_all_groups(scoring.groups, table, preds.n)  # before any batch: a bad file stops at once
    notes = [count_target_note(preds.describe(), plan.count_target), *preset_notes(plan)]
    findings.warnings.extend(note for note in notes if note and note not in findings.warnings)
    names = list(scoring.track_names) if scoring.track_names else default_track_names(preds.n_tracks)
    if len(names) != preds.n_tracks:
        raise UsageError(f"--track-names gives {len(names)} name(s) for {preds.n_tracks} track(s)")
    columns = {}  # name → float64 over the rows scored, filled batch by batch (allocated at the first batch)
    computer, device, computing = make_computer(scoring, names, run, inputs.read_workers)
    screen = ValueScreen(findings, preds, truth_source, table, inputs.policies)

    # The seed computation's terms of the logits alone are computed in the reading thread, and those of the counts by
    # the reading processes (``run_job``) or else that thread, beside the computation: they also tell the value screen
    # which regions' logits are all finite, and the nonzero counts it checks.
    seed_terms = computer.logit_terms is not None  # numpy computes the seed losses

    def screened(i, predicted, observed, terms, counted):  # in the reading thread, overlapping the computation
        if seed_terms and counted is None:
            counted = computer.count_terms(observed)
        logits, logcounts, observed, skip = screen_batch(
            screen, i, *predicted, observed, None if terms is None else terms.finite,
            None if counted is None else counted.every_nonzero(observed),
            None if counted is None else lambda: counted.non_integer_regions(observed))
        preds.check_batch(logits, observed, table, i)
        early = {} if not seed_terms or skip.any() else {"terms": terms, "counted": counted}  # skipped rows: zeros now
        return skip, computer.prepare(logits, logcounts, observed), early

    with computing:
        for i, j, (skip, tensors, early) in inputs.batches(screened, computer.logit_terms):
            overflowed = []

            def screen_columns(columns, always_defined, i=i, skip=skip):  # a value that overflowed: --nonfinite
                overflowed.append(screen.screen_columns(i, columns, always_defined, skip, scoring.dtype))
                return overflowed[-1]

            batch = computer(*tensors, first_row=i, screen=screen_columns, **early)
            skip = skip | overflowed[0]
            store_batch(columns, batch, i - inputs.rows[0], inputs.rows[1] - inputs.rows[0], skip)
            if progress:  # regions done of the regions this run scores (a shard's own count)
                progress(j - inputs.rows[0], inputs.rows[1] - inputs.rows[0])
    value_warnings_from = len(findings.warnings)
    screen.finish()
    if table is None:
        table = Regions.row_numbers(preds.n)
    settings = {"count_loss_weight": scoring.count_loss_weight, "device": device, "dtype": scoring.dtype,
                "batch_size": inputs.batch_size, "track_names": names, "metrics": plan.describe(),
                "bpnet_eval_version": __version__}
    sources = {"predictions": preds.describe(), "truth": truth_source.describe(), "regions": table.source}
    if "members" in sources["predictions"]:  # an ensemble: its definition is a setting of the numbers
        described = sources["predictions"]
        settings["ensemble"] = {"members": [m.get("path") for m in described["members"]],
                                "profile": described["profile"], "logcounts": described["logcounts"]}
    settings["input_conventions"] = input_conventions(sources["predictions"], sources["truth"], table.source)

    start, stop = inputs.rows
    if inputs.partial:
        partial_state = {"rows": (start, stop), "n_regions": preds.n, "findings": findings,
                         "structural_warnings": findings.warnings[:value_warnings_from],
                         "non_integer": screen.non_integer, "settings": settings, "inputs": sources}
        return ScoreResult(table.subset(slice(start, stop)), columns, None, names, partial=partial_state)
    examples = example_regions(columns, table, inputs.read_rows)
    if on_columns is not None:
        on_columns(columns, examples, names)
    summary, files = summarize_scores(columns, table, findings, settings, sources, plan, names,
                                      computer.pooled_auprc, groupings)
    return ScoreResult(table, columns, summary, names, files, examples, groupings=groupings)


def run_job(job: Job, progress: Optional[Callable[[int, int], None]] = None,
            on_columns: Optional[Callable[[dict, Optional[dict], list], None]] = None) -> ScoreResult:
    """Score ``job``: open and validate its inputs (forking the readers), then import torch and compute
    (``on_columns``: see ``score_inputs``).

    With ``job.rows`` set, the result holds those rows' columns, ``summary`` None and ``partial`` (see
    ``bpnet_eval.shards``)."""
    seed_terms = numpy_seed_likely(job.scoring, job.run)
    with open_inputs(job, *((count_terms, count_terms_bytes, interleaved_count_terms) if seed_terms else ())) as inputs:
        return score_inputs(inputs, job.scoring, job.run, progress, on_columns)


def score(predictions, truth, regions=None, *, read: Optional[ReadOptions] = None,
          scoring: Optional[ScoreOptions] = None, run: Optional[RunOptions] = None,
          progress: Optional[Callable[[int, int], None]] = None, **options) -> ScoreResult:
    """Score predictions against observed counts, region by region.

    Parameters
    ----------
    predictions : str, list of str, or (logits, logcounts)
        An HDF5 file in a known layout; counts-scale bigWigs, one per track (a list, or one string
        ``plus.bw,minus.bw``; needs ``regions``); two ``.npz`` files (bpnet-lite 0.9); or arrays: logits
        ``(N, L)``/``(N, S, L)`` and log counts ``(N,)``, ``(N, 1)`` or ``(N, S)``.
    truth : str, list of str, or array
        One bigWig per predicted track, one HDF5 file of counts, or an array ``(N, S, L)``.
    regions : str or Regions, optional
        BED / narrowPeak file or a Regions table; default: the coordinates stored with the predictions.
    read, scoring, run : ReadOptions, ScoreOptions, RunOptions, optional
        How to read, what to compute and how to run (``bpnet_eval.options``).
    progress : callable(done, total), optional
        Called after every batch.
    **options
        Any field of the three option classes by name, applied on top (``metrics="all"``, ``device="cpu"``,
        ``policies=Policies(off_end="skip")``, ``rows=(start, stop)`` for one shard).

    Returns
    -------
    result : ScoreResult
        ``columns`` maps each per-region column to a float64 array in input order; ``summary`` is
        the dictionary written to ``summary.json``.

    Examples
    --------
    >>> import numpy as np, bpnet_eval
    >>> rng = np.random.default_rng(0)
    >>> observed = rng.poisson(1.0, size=(4, 2, 50))
    >>> logits, logcounts = rng.normal(size=(4, 2, 50)), np.log1p(observed.sum(axis=(1, 2)))[:, None]
    >>> result = bpnet_eval.score((logits, logcounts), observed, device="cpu", read_workers=0)
    >>> sorted(result.columns)[:3]
    ['count_log1p_mse', 'mixture_loss', 'observed_counts']
    >>> round(result.summary["metrics"]["count_log1p_mse"]["mean"], 12)
    0.0
    """
    rows = options.pop("rows", None)
    read, scoring, run_options = split_options(read, scoring, run, **options)
    return run_job(Job(predictions, truth, regions, read, scoring, run_options, rows), progress)


def check_job(job: Job, scan_values: bool = True) -> Findings:
    """Open and validate ``job``'s inputs like ``run_job`` does, collecting every problem instead of stopping;
    with ``scan_values``, read every value too (finite predictions, non-negative observed counts)."""
    read = job.read
    try:
        preds, table, truth_source, findings = open_sources(job.predictions, job.truth, job.regions, read,
                                                            job.run.batch_size)
    except BpnetEvalError as err:
        findings = Findings()
        findings.add(str(err), err.exit_code)
        for bad in unreadable_truth_bigwigs(job.truth):  # every unreadable bigWig, not only the first problem
            if str(bad) != str(err):
                findings.add(str(bad), bad.exit_code)
        return findings
    if table is not None or not findings.problems:  # a row table is built only for predictions that passed
        check_groups(job, table, preds.n, findings)
    notes = [count_target_note(preds.describe(), job.scoring.plan.count_target), *preset_notes(job.scoring.plan)]
    findings.warnings.extend(note for note in notes if note and note not in findings.warnings)
    try:
        if not scan_values or findings.problems:
            findings.detected["values"] = "not read" + (" (fix the problems first)" if findings.problems else "")
            return findings
        screen = ValueScreen(findings, preds, truth_source, table, read.policies, collect=True)
        computer = None
        try:
            batch_size = batch_regions(job.run.batch_size, preds.n_tracks, preds.length)
            for i, _, (logits, logcounts), observed in iter_batches(preds, truth_source, batch_size):
                logits, logcounts, observed, skip = screen_batch(screen, i, logits, logcounts, observed)
                preds.check_batch(logits, observed, table, i)  # as run_job does
                extreme, unscreened = screen.extreme_rows(logits, logcounts, observed, skip)
                if extreme.any():  # a value may overflow: compute the batch as score would
                    computer = computer or _check_computer(job, preds.n_tracks)
                    computer(*zero_rows(unscreened, logits, logcounts, observed), first_row=i,
                             screen=lambda columns, defined, i=i, rows=unscreened: screen.screen_columns(
                                 i, columns, defined, rows, job.scoring.dtype))
        except BpnetEvalError as err:
            findings.add(str(err), err.exit_code)
        screen.finish()
        findings.detected["values"] = f"read all {preds.n} regions"
        return findings
    finally:
        preds.close()
        truth_source.close()


def check_groups(job: Job, table: Optional[Regions], n_regions: int, findings: Findings) -> None:
    """Read ``job``'s ``--groups`` files over the regions as ``score`` would: their groupings (each group's region
    count, and the regions in no group and in several) in ``findings.detected["groups"]``, or their problem."""
    try:
        groupings = read_all_groups(job.scoring.groups, table, n_regions)
    except BpnetEvalError as err:
        findings.add(str(err), err.exit_code)
        return
    if groupings:
        findings.detected["groups"] = {
            g.name: {**g.describe(), "groups": {label: int(g.member[:, k].sum()) for k, label in enumerate(g.labels)}}
            for g in groupings}


def _check_computer(job: Job, n_tracks: int):
    """The computation ``score`` would run for ``job`` (imports torch: only when some value is extreme)."""
    from .compute import BatchComputer

    scoring = job.scoring
    names = list(scoring.track_names) if scoring.track_names else default_track_names(n_tracks)
    if len(names) != n_tracks:
        raise UsageError(f"--track-names gives {len(names)} name(s) for {n_tracks} track(s)")
    return BatchComputer(scoring.count_loss_weight, names, "cpu", scoring.dtype, scoring.plan)


def check(predictions, truth, regions=None, *, read: Optional[ReadOptions] = None,
          scoring: Optional[ScoreOptions] = None, scan_values: bool = True, **options) -> Findings:
    """Validate inputs without scoring; ``Findings`` lists what was detected, every problem and the warnings.

    Takes the inputs and options of ``score`` (the scoring options decide what would overflow).

    Examples
    --------
    >>> import numpy as np, bpnet_eval
    >>> findings = bpnet_eval.check((np.zeros((3, 2, 10)), np.zeros((3, 1))), np.ones((3, 2, 10)))
    >>> findings.problems
    []
    """
    read, scoring, run_options = split_options(read, scoring, None, **options)
    return check_job(Job(predictions, truth, regions, read, scoring, run_options), scan_values)
