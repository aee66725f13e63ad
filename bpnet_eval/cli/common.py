"""What every command shares: the options declared once (with their help panels), the error guard, the
progress display and the figure painter. Nothing here opens a file or imports torch."""

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console


from ..errors import EXIT_RUNTIME, BpnetEvalError
from ..options import (CountTarget, Dtype, EnsembleLogcounts, NonFinite, OffEnd, Policies, PredLogcounts,
                       PredLogcountsPer, Preset, ProfileKind, ReadOptions, RegionsFormat, ScoreOptions, Smooth, WindowCenter)

stderr = Console(stderr=True)
STARTED = time.monotonic()  # the command line is imported when the command starts

# Help panels: options grouped by what they are about.
INPUTS, LAYOUTS, REGIONS, METRICS = "Inputs", "Layouts (HDF5 and bigWig predictions)", "Regions", "Metrics"
POLICIES, OUTPUT, PERFORMANCE, CLUSTER = "Policies for messy inputs", "Output", "Performance", "Cluster"

# ------------------------------------------------------------------ inputs, shared by score and check
# Input paths are checked by the readers (readable=False: an unreadable file is a bad input, exit 3, not a
# usage error), each before it is opened.
Predictions = Annotated[Path, typer.Argument(
    help="HDF5 predictions (logits + log counts, any known layout), or counts-scale bigWigs, one per track, "
         "comma-separated (pred.plus.bw,pred.minus.bw; needs --regions), or bpnet-lite's two .npz files "
         "(logits.npz,logcounts.npz; needs --regions).", show_default=False, readable=False)]
Truth = Annotated[List[Path], typer.Argument(
    help="One bigWig per predicted track (plus, then minus), or one HDF5 file of observed counts.",
    show_default=False, readable=False)]
Ensemble = Annotated[Optional[List[str]], typer.Option(
    "--ensemble", "-e", rich_help_panel=INPUTS, show_default=False, metavar="PREDICTIONS",
    help="More predictions of the same regions (fold models; repeatable, each in any PREDICTIONS format): score "
         "the ensemble of PREDICTIONS and these — the mean of their probabilities, and their log counts as "
         "--ensemble-logcounts says.")]
EnsembleLogcountsOption = Annotated[EnsembleLogcounts, typer.Option(
    "--ensemble-logcounts", rich_help_panel=INPUTS,
    help="The ensemble's log counts: mean-log (the mean of the members' log counts, as ProCapNet merges its "
         "folds) or log-mean (the log of the mean of their predicted counts).")]
RegionsFile = Annotated[Optional[Path], typer.Option(
    "--regions", "-r", rich_help_panel=REGIONS, show_default=False, readable=False,
    help="BED (start..end) or narrowPeak (start + summit ± L/2), plain or gzipped, one row per prediction "
         "(default: the coordinates stored in PREDICTIONS); several files, comma-separated, are interleaved one "
         "row of each in turn, as bpnet-lite's predict (tangermeme extract_loci) reads its loci.")]
WindowCenterOption = Annotated[Optional[WindowCenter], typer.Option(
    "--window-center", rich_help_panel=REGIONS, show_default=False,
    help="Centre each window of L on the narrowPeak summit or on the interval's midpoint (default: midpoint for "
         "bpnet-lite .npz predictions, else the summit of narrowPeak rows and start..end of BED rows).")]
ChromsOption = Annotated[Optional[str], typer.Option(
    "--chroms", rich_help_panel=REGIONS, show_default=False,
    help="Comma-separated chromosomes: keep only --regions rows on them, before files are interleaved (bpnet-lite "
         "predict's 'chroms').")]
LengthOption = Annotated[Optional[int], typer.Option(
    "--length", rich_help_panel=REGIONS, show_default=False,
    help="L, the predicted length, for bigWig predictions over narrowPeak or midpoint-centred windows (bigWigs "
         "do not store it).")]
RegionsFormatOption = Annotated[RegionsFormat, typer.Option(
    "--regions-format", rich_help_panel=REGIONS,
    help="How --regions is read: auto (narrowPeak when every row has 10 columns with an integer summit offset "
         "inside its peak, BED when none does; rows that disagree are an error), bed (start..end) or "
         "narrowpeak (start + summit ± L/2).")]
PredPseudocount = Annotated[float, typer.Option(
    "--pred-pseudocount", rich_help_panel=LAYOUTS,
    help="bigWig predictions: added to every predicted value before the profile is normalised (for positions "
         "predicted 0 where counts were observed).")]
PredLogcountsOption = Annotated[PredLogcounts, typer.Option(
    "--pred-logcounts", rich_help_panel=LAYOUTS,
    help="bigWig predictions: predicted log count = log: ln(window total), or log1p: ln(1 + window total).")]
PredLogcountsPerOption = Annotated[PredLogcountsPer, typer.Option(
    "--pred-logcounts-per", rich_help_panel=LAYOUTS,
    help="bigWig predictions: one predicted log count per window over all tracks (region), or one per track from "
         "its own total (track: models that predict a total per strand, e.g. BPNet export-bw, bpnet 2.0).")]
LogitsDataset = Annotated[Optional[str], typer.Option(
    "--logits-dataset", rich_help_panel=LAYOUTS, show_default=False, help="HDF5 dataset of the predicted profile.")]
LogcountsDataset = Annotated[Optional[str], typer.Option(
    "--logcounts-dataset", rich_help_panel=LAYOUTS, show_default=False,
    help="HDF5 dataset of the predicted log counts.")]
ProfileKindOption = Annotated[Optional[ProfileKind], typer.Option(
    "--profile-kind", rich_help_panel=LAYOUTS, show_default=False,
    help="What the profile dataset holds (default: from the layout).")]
Head = Annotated[Optional[int], typer.Option(
    "--head", rich_help_panel=LAYOUTS, show_default=False, help="BPReveal head (default: the first).")]
TruthDataset = Annotated[Optional[str], typer.Option(
    "--truth-dataset", rich_help_panel=LAYOUTS, show_default=False,
    help="HDF5 dataset of observed counts in a TRUTH HDF5.")]
OffEndOption = Annotated[OffEnd, typer.Option(
    "--off-end", rich_help_panel=POLICIES,
    help="Windows past a chromosome end: error, skip (not scored, listed in skipped.tsv and summary.json) or "
         "pad (scored, zeros past the end).")]
NonFiniteOption = Annotated[NonFinite, typer.Option(
    "--nonfinite", rich_help_panel=POLICIES,
    help="Regions whose predictions hold NaN/inf: error, or skip (not scored, listed in the report).")]
ExternalLinks = Annotated[bool, typer.Option(
    "--allow-external-links", rich_help_panel=POLICIES,
    help="Read HDF5 external links and virtual or externally stored datasets (refused by default: they read "
         "other files).")]
BatchSize = Annotated[Optional[int], typer.Option(
    "--batch-size", rich_help_panel=PERFORMANCE, show_default=False,
    help="Regions per batch (default: 1024, fewer for regions of more than 2,048 values, S x L: at most 2M values a "
         "batch).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=OUTPUT, help="No progress and no tables.")]
Plots = Annotated[Optional[bool], typer.Option(
    "--plots/--no-plots", rich_help_panel=OUTPUT, show_default=False,
    help="Draw PNG figures into the report (default: on when matplotlib is installed).")]
JsonOutput = Annotated[bool, typer.Option(
    "--json", rich_help_panel=OUTPUT,
    help="Print the summary JSON (= summary.json) to stdout and nothing else there; no table.")]
Debug = Annotated[bool, typer.Option("--debug", rich_help_panel=OUTPUT, help="Show tracebacks.")]
Wide = Annotated[bool, typer.Option(
    "--wide", rich_help_panel=OUTPUT,
    help="The full summary table on any terminal (default: tables that fit the terminal when it is narrower).")]


# --------------------------------------------------------------- what to compute, shared by score and check
METRICS_HELP = ("default (seed losses + per-track MNLL), all, or a comma list of: jsd_distance, jsd_divergence, "
                "norm_jsd, jsd_shuffled, jsd_observed_shuffled, pearson, spearman, cross_entropy, mnll_per_base, "
                "auprc_bin1, auprc_bin10 (docs/metrics.md).")
TrackNames = Annotated[Optional[str], typer.Option(
    "--track-names", rich_help_panel=INPUTS, show_default=False,
    help="Comma-separated track names for column names (default: plus,minus for two tracks, else track0,...).")]
CountLossWeight = Annotated[float, typer.Option(
    "--count-loss-weight", "-w", rich_help_panel=METRICS, help="Weight of the count term in the mixture loss.")]
MetricsOption = Annotated[str, typer.Option("--metrics", "-m", rich_help_panel=METRICS, help=METRICS_HELP)]
PresetOption = Annotated[Optional[Preset], typer.Option(
    "--preset", rich_help_panel=METRICS, show_default=False,
    help="Reproduce a peer's definitions and summary file: bpnet-lite (performance.tsv), chrombpnet "
         "(chrombpnet_metrics.json), bpnet (bpnet_metrics.json), bpreveal (bpreveal_metrics.<track>.json), "
         "basepairmodels (mnll.npz, jsd.npz, ... as its predict writes them).")]
CountTargetOption = Annotated[Optional[CountTarget], typer.Option(
    "--count-target", rich_help_panel=METRICS, show_default=False,
    help="What predicted log counts are compared with: log1p = ln(1 + K) (the seed; default) or log = ln K "
         "(BPReveal's training target; the bpreveal preset's default).")]
SmoothOption = Annotated[Smooth, typer.Option(
    "--smooth", rich_help_panel=METRICS, help="Gaussian-smooth the profiles compared by the shape metrics.")]
SmoothSigma = Annotated[float, typer.Option(
    "--smooth-sigma", rich_help_panel=METRICS, help="Smoothing kernel sigma (bpnet-lite: 7).")]
SmoothWidth = Annotated[int, typer.Option(
    "--smooth-width", rich_help_panel=METRICS, help="Smoothing kernel width (bpnet-lite: 81).")]
Seed = Annotated[int, typer.Option("--seed", rich_help_panel=METRICS, help="Seed of the shuffled baselines.")]
GroupsOption = Annotated[Optional[List[Path]], typer.Option(
    "--groups", rich_help_panel=REGIONS, show_default=False, readable=False,
    help="Region groups: every summary also per group (repeatable). A BED file (chrom, start, end, group): a "
         "region is in each group whose interval holds its window centre; or a TSV whose header starts with "
         "chrom start end (windows as regions.tsv writes them) or row (1-based), one grouping per other "
         "column. A region may be in no group or in several (docs/reports.md#region-groups).")]
DtypeOption = Annotated[Dtype, typer.Option(
    "--dtype", rich_help_panel=PERFORMANCE,
    help="float64 (exact to 1e-6) or float32 (1e-4; computed in torch, no faster on the CPU: docs/usage.md).")]


def score_options(count_loss_weight, dtype, track_names, metrics, preset, smooth, smooth_sigma, smooth_width,
                  seed, groups=None, count_target=None) -> ScoreOptions:
    """The ``ScoreOptions`` of the shared options of what to compute."""
    return ScoreOptions(count_loss_weight, dtype, track_names.split(",") if track_names else None, metrics, preset,
                        smooth, smooth_sigma, smooth_width, seed, tuple(str(g) for g in groups or ()), count_target)


def read_options(pred_pseudocount: float, pred_logcounts, logits_dataset, logcounts_dataset, profile_kind, head,
                 truth_dataset, off_end, nonfinite, allow_external_links, regions_format="auto", window_center=None,
                 chroms=None, length=None, ensemble=None, ensemble_logcounts="mean-log",
                 pred_logcounts_per="region") -> ReadOptions:
    """The ``ReadOptions`` of the shared input options."""
    return ReadOptions(logits_dataset, logcounts_dataset, profile_kind, head, truth_dataset, pred_pseudocount,
                       pred_logcounts, Policies(off_end, nonfinite, allow_external_links), regions_format,
                       window_center, chroms, length, tuple(ensemble or ()), ensemble_logcounts, pred_logcounts_per)


def input_paths(predictions: Path, truth: List[Path], regions: Optional[Path]):
    """``(predictions, truth, regions)`` as the library takes them (strings)."""
    return str(predictions), [str(t) for t in truth], str(regions) if regions else None


# ----------------------------------------------------------------------------- running a command
def fail(message: str, code: int) -> None:
    """Print one line to stderr and exit with ``code``."""
    stderr.print(f"bpnet-eval: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def run_guarded(work, debug: bool):
    """Run ``work()``; user errors become one line and their exit code, anything else one line and 1."""
    try:
        return work()
    except typer.Exit:
        raise
    except BpnetEvalError as err:
        if debug:
            raise
        fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        fail("interrupted; no report was written", 130)
    except Exception as err:  # a bug or an environment problem: still one line unless --debug
        if debug:
            raise
        fail(f"unexpected {type(err).__name__}: {err} (rerun with --debug for the traceback)", EXIT_RUNTIME)


class ProgressReporter:
    """A live bar on a terminal; plain periodic lines when stderr is a file or a pipe.

    The bar is redrawn at each update, never by a thread of its own: a running thread makes forking unsafe
    (``environment.fork_is_safe``), and the run forks its reading processes while the bar is shown."""

    def __init__(self, enabled: bool, interval_s: float = 10.0):
        self.enabled, self.interval_s = enabled, interval_s
        self._bar = self._task = None
        self._last = 0.0
        self._start = time.monotonic()

    def __enter__(self):
        if self.enabled and stderr.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self._bar = Progress("scoring", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=stderr, transient=True, auto_refresh=False)
            self._bar.__enter__()
        return self

    def __call__(self, done: int, total: int):
        if not self.enabled:
            return
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task("scoring", total=total)
            self._bar.update(self._task, completed=done, refresh=True)
            return
        now = time.monotonic()
        if now - self._last >= self.interval_s or done == total:
            self._last = now
            print(f"bpnet-eval: scored {done}/{total} regions ({now - self._start:.1f} s)", file=sys.stderr,
                  flush=True)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)


class FiguresInSteps:
    """The painter process's calls (``figure_painter``), ``(step, *arguments)``: ``examples(columns, track_names,
    examples)`` forks a process drawing the example panels (the longest figure, which needs no summary: it starts
    while this run's summary is made); ``rest(columns or None, summary, examples or None)`` draws the other figures,
    one in a process forked then and one here, and returns every figure (``{name: PNG bytes}``, in ``FIGURE_FILES``
    order), the example panels taken from their process, or drawn with the rest where none was started. The columns
    are sent once. Where fork is not safe, each figure is drawn here, in turn."""

    def __init__(self):
        self._columns = self._example_regions = self._examples = None

    def __call__(self, step: str, *arguments):
        return {"examples": self.examples, "rest": self.rest}[step](*arguments)

    def examples(self, columns, track_names, examples) -> None:
        from ..report.figures import PROFILE_EXAMPLES, figure_jobs
        from ..environment import fork_is_safe
        from ..workers import ForkedCall

        self._columns, self._example_regions = columns, examples
        jobs = figure_jobs(columns, {"settings": {"track_names": track_names}}, examples, names=(PROFILE_EXAMPLES,))
        if jobs and fork_is_safe():
            self._examples = ForkedCall(jobs[PROFILE_EXAMPLES], "drawing a figure")

    def rest(self, columns, summary, examples) -> dict:
        from ..report.figures import FIGURE_FILES, PROFILE_EXAMPLES, figure_jobs
        from ..environment import fork_is_safe
        from ..workers import call_forked

        columns = self._columns if columns is None else columns
        examples = self._example_regions if examples is None else examples
        try:
            started = self._examples is not None
            names = [name for name in FIGURE_FILES if not (started and name == PROFILE_EXAMPLES)]
            jobs = figure_jobs(columns, summary, examples, names=names)
            if len(jobs) < 2 or not fork_is_safe():
                drawn = {name: draw() for name, draw in jobs.items()}
            else:  # the last (the longest) here, once the others' processes are forked
                drawn = call_forked(jobs, "drawing a figure", here=list(jobs)[-1])
            if started:
                drawn[PROFILE_EXAMPLES] = self._examples.result()
            return {name: drawn[name] for name in FIGURE_FILES if name in drawn}
        finally:
            if self._examples is not None:
                self._examples.close()
                self._examples = None


@contextmanager
def figure_painter(draw_plots: bool, background: bool = True):
    """``paint(columns, summary, examples)``: ``{}`` without plots, else a callable that the report writer calls
    once regions.tsv is started (formatted by a forked process meanwhile), returning the figures
    (``report.figures.draw_figures``) or, where fork is safe and ``background``, a callable that waits for them:
    a process forked now imports matplotlib while the scores are computed, and draws the figures, each in a
    process of its own, while the report's tables are written. ``paint.early(columns, examples, track_names)``,
    called once the columns are final (``pipeline.run_job``'s ``on_columns``), starts the example panels there
    before the summary is made (``FiguresInSteps``). Enter it before the run imports torch."""
    from ..report.figures import draw_figures, figures_or_none, warm_up
    from ..environment import fork_is_safe
    from ..workers import BackgroundCall

    if not draw_plots:
        paint = lambda columns, summary, examples: {}
    elif not (background and fork_is_safe()):
        paint = lambda columns, summary, examples: lambda: figures_or_none(lambda: draw_figures(columns, summary,
                                                                                               examples))
    else:
        with BackgroundCall(warm_up, FiguresInSteps(), "drawing the figures") as painter:
            steps = []

            def early(columns, examples, track_names):
                if examples and not steps:
                    painter.submit("examples", columns, list(track_names), examples)
                    steps.append("examples")

            def paint(columns, summary, examples):
                def start():
                    painter.submit("rest", None if steps else columns, summary, None if steps else examples)

                    def wait():
                        if steps:
                            painter.result()  # the early step's answer (nothing)
                        return painter.result()

                    return lambda: figures_or_none(wait)

                return start

            paint.early = early
            yield paint
            return
    paint.early = lambda columns, examples, track_names: None
    yield paint


def draw_plots(plots: Optional[bool], quiet: bool) -> bool:
    """``--plots/--no-plots`` resolved (``report.figures.resolve_plots``); when figures are off only because
    matplotlib is missing, one line says so and how to get them."""
    from ..report.figures import resolve_plots

    wanted = resolve_plots(plots)
    if plots is None and not wanted and not quiet:
        stderr.print("bpnet-eval: note: no figures: matplotlib is not installed (pip install 'bpnet-eval[plots]')",
                     highlight=False, markup=False)
    return wanted


def report_fork():
    """``workers.ForkedCall`` where fork is safe (``environment.fork_is_safe``), else None: how the report writer
    writes regions.tsv in a process of its own while it writes the rest (``report.regions_file``)."""
    from ..environment import fork_is_safe
    from ..workers import ForkedCall

    return ForkedCall if fork_is_safe() else None


def write_and_show(out_dir: Path, result, figures, json_output: bool, quiet: bool, note: str,
                   wide: bool = False) -> None:
    """Write the report of ``result`` into ``out_dir`` (``figures``: as ``report.writer.write_report`` takes
    them; regions.tsv written by a forked process where that is safe: ``report_fork``), then print the summary
    JSON or the table (``wide``: the full table on any terminal), the policy notes, and a last line with where
    the report is and the time the run took."""
    from ..report.tables import summary_json
    from ..report.terminal import print_outcome, print_summary
    from ..report.writer import write_report

    directory = write_report(out_dir, result, figures, fork=report_fork())
    if json_output:
        if sys.stdout is None:
            raise BpnetEvalError(f"stdout is closed, so the summary JSON cannot be printed; it is in "
                                 f"{directory}/summary.json (drop --json, or leave stdout open)")
        sys.stdout.write(summary_json(result.summary))
    elif not quiet and sys.stdout is not None:
        print_summary(result.summary, Console(), wide=wide)
    if not quiet:
        print_outcome(result.summary, stderr)
        elapsed = time.monotonic() - STARTED
        stderr.print(f"{note} {directory}/ ({result.summary['n_regions']} regions, {elapsed:.1f} s)",
                     highlight=False, markup=False, soft_wrap=True)
