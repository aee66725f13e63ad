"""The ``bpnet-eval`` command line: parse, call the pipeline, print. No logic of its own."""

import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from . import __version__
from .environment import configure_caches, configure_threads
from .errors import EXIT_RUNTIME, EXIT_USAGE, BpnetEvalError
from .outdir import prepare_output
from .validate import Policies

try:  # newer typer vendors click
    from typer._click.exceptions import ClickException as UsageErrorTypes
    from typer.exceptions import Abort as ClickAbort
except ImportError:  # pragma: no cover - older typer on the real click
    from click.exceptions import Abort as ClickAbort, ClickException as UsageErrorTypes

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Score saved predictions of base-resolution genomics models against observed tracks.")
stderr = Console(stderr=True)

PRED_PSEUDOCOUNT_HELP = ("bigWig predictions: added to every predicted value before the profile is normalised "
                         "(for positions predicted 0 where counts were observed).")
PRED_LOGCOUNTS_HELP = "bigWig predictions: predicted log count = log: ln(window total), or log1p: ln(1 + window total)."
OFF_END_HELP = ("Windows past a chromosome end: error, skip (not scored, listed in skipped.tsv and summary.json) "
                "or pad (scored, zeros past the end).")
NONFINITE_HELP = "Regions whose predictions hold NaN/inf: error, or skip (not scored, listed in the report)."
EXTERNAL_HELP = ("Read HDF5 external links and virtual or externally stored datasets (refused by default: "
                 "they read other files).")


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
    """A live bar on a terminal; plain periodic lines when stderr is a file or a pipe."""

    def __init__(self, enabled: bool, interval_s: float = 10.0):
        self.enabled, self.interval_s = enabled, interval_s
        self._bar = self._task = None
        self._last = 0.0
        self._start = time.monotonic()

    def __enter__(self):
        if self.enabled and stderr.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self._bar = Progress("scoring", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=stderr, transient=True)
            self._bar.__enter__()
        return self

    def __call__(self, done: int, total: int):
        if not self.enabled:
            return
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task("scoring", total=total)
            self._bar.update(self._task, completed=done)
            return
        now = time.monotonic()
        if now - self._last >= self.interval_s or done == total:
            self._last = now
            print(f"bpnet-eval: scored {done}/{total} regions ({now - self._start:.1f} s)", file=sys.stderr,
                  flush=True)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)


def version_callback(value: bool):
    if value:
        print(f"bpnet-eval {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                              help="Print the version and exit.")):
    """Score saved predictions of BPNet/ChromBPNet-style models against observed tracks."""


@app.command()
def score(
    predictions: Path = typer.Argument(..., help="HDF5 predictions (logits + log counts, any known layout), or "
                                       "counts-scale bigWigs, one per track, comma-separated "
                                       "(pred.plus.bw,pred.minus.bw; needs --regions), or bpnet-lite's two .npz "
                                       "files (logits.npz,logcounts.npz; needs --regions)."),
    truth: List[Path] = typer.Argument(..., help="One bigWig per predicted track (plus, then minus), "
                                                 "or one HDF5 file of observed counts."),
    regions: Optional[Path] = typer.Option(None, "--regions", "-r", help="BED (start..end) or narrowPeak "
                                           "(start + summit ± L/2), one row per prediction. Default: the "
                                           "coordinates stored in PREDICTIONS."),
    pred_pseudocount: float = typer.Option(0.0, "--pred-pseudocount", help=PRED_PSEUDOCOUNT_HELP),
    pred_logcounts: str = typer.Option("log", "--pred-logcounts", help=PRED_LOGCOUNTS_HELP),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Report directory (default: "
                                       "./bpnet-eval-<PREDICTIONS name>)."),
    count_loss_weight: float = typer.Option(1.0, "--count-loss-weight", "-w", help="Weight of the count term "
                                            "in the mixture loss."),
    device: str = typer.Option("auto", help="auto (GPU when torch sees one), cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(1024, help="Regions per batch."),
    dtype: str = typer.Option("float64", help="float64 (exact to 1e-6) or float32 (1e-4, faster)."),
    track_names: Optional[str] = typer.Option(None, help="Comma-separated track names for column names "
                                              "(default: plus,minus for two tracks, else track0,...)."),
    logits_dataset: Optional[str] = typer.Option(None, help="HDF5 dataset of the predicted profile."),
    logcounts_dataset: Optional[str] = typer.Option(None, help="HDF5 dataset of the predicted log counts."),
    profile_kind: Optional[str] = typer.Option(None, help="What the profile dataset holds: logits, probs or "
                                               "counts (default: from the layout)."),
    head: Optional[int] = typer.Option(None, help="BPReveal head to score (default: the first)."),
    truth_dataset: Optional[str] = typer.Option(None, help="HDF5 dataset of observed counts in a TRUTH HDF5."),
    off_end: str = typer.Option("error", "--off-end", help=OFF_END_HELP),
    nonfinite: str = typer.Option("error", "--nonfinite", help=NONFINITE_HELP),
    allow_external_links: bool = typer.Option(False, "--allow-external-links", help=EXTERNAL_HELP),
    metrics: str = typer.Option("default", "--metrics", "-m", help="default (seed losses + per-track MNLL), "
                                "all, or a comma list: jsd_distance,jsd_divergence,norm_jsd,jsd_shuffled,"
                                "jsd_observed_shuffled,pearson,spearman,cross_entropy,mnll_per_base,"
                                "auprc_bin1,auprc_bin10 (docs/metrics.md)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Reproduce a peer's definitions and summary "
                                         "file: bpnet-lite (performance.tsv), chrombpnet (chrombpnet_metrics.json), "
                                         "bpnet (bpnet_metrics.json)."),
    smooth: str = typer.Option("none", "--smooth", help="Gaussian-smooth the profiles compared by the shape "
                               "metrics: none, predictions, observed or both."),
    smooth_sigma: float = typer.Option(7.0, "--smooth-sigma", help="Smoothing kernel sigma (bpnet-lite: 7)."),
    smooth_width: int = typer.Option(81, "--smooth-width", help="Smoothing kernel width (bpnet-lite: 81)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffled baselines."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no table."),
    plots: Optional[bool] = typer.Option(None, "--plots/--no-plots", help="Draw PNG figures into the report "
                                         "(default: on when matplotlib is installed)."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary JSON (= summary.json) to stdout "
                                     "and nothing else there; the table is not printed."),
    read_workers: Optional[int] = typer.Option(None, "--read-workers", help="Processes reading the observed "
                                               "bigWigs ahead (default: half the CPUs, at most 4; 0: a thread of "
                                               "the main process)."),
    read_ahead_mb: int = typer.Option(256, "--read-ahead-mb", help="Shared memory (MB) the reading processes fill "
                                      "ahead of the computation (at least two batches per process)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n: score only shard i of n (1-based, "
                                        "contiguous chunk-aligned regions) into a partial report in --out; "
                                        "auto/n takes i from SLURM_ARRAY_TASK_ID. Combine with bpnet-eval merge. "
                                        "A shard whose partial report is complete is skipped."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
):
    """Score PREDICTIONS against TRUTH: per-region MNLL, log1p-MSE and mixture loss, and a summary."""
    from .inputs import open_inputs
    from .plots import figure_painter, resolve_plots

    def work():
        policies = Policies(off_end, nonfinite, allow_external_links)
        out_dir = out or Path(f"bpnet-eval-{Path(str(predictions).split(',')[0]).stem}")
        prepare_output(out_dir)
        sources = dict(batch_size=batch_size, logits_dataset=logits_dataset, logcounts_dataset=logcounts_dataset,
                       profile_kind=profile_kind, head=head, truth_dataset=truth_dataset,
                       pred_pseudocount=pred_pseudocount, pred_logcounts=pred_logcounts)
        options = dict(count_loss_weight=count_loss_weight, device=device, dtype=dtype,
                       track_names=track_names.split(",") if track_names else None, metrics=metrics, preset=preset,
                       smooth=smooth, smooth_sigma=smooth_sigma, smooth_width=smooth_width, seed=seed)
        if shard is not None:
            configure_threads()
            return score_one_shard(shard, out_dir, str(predictions), [str(t) for t in truth], regions, policies,
                                   {**sources, **options, "read_workers": read_workers, "read_ahead_mb": read_ahead_mb}, quiet)
        draw_plots = resolve_plots(plots)
        with open_inputs(str(predictions), [str(t) for t in truth], str(regions) if regions else None,
                         policies=policies, read_workers=read_workers, read_ahead_mb=read_ahead_mb,
                         **sources) as inputs, figure_painter(draw_plots) as paint:
            # torch is imported only now: the reading and drawing processes were forked from a one-thread
            # process, and they work while the import runs
            from .pipeline import score_inputs
            from .report_extras import example_regions

            configure_threads()
            with ProgressReporter(not quiet) as progress:
                result = score_inputs(inputs, progress=progress, **options)
            figures = paint(result.columns, result.summary, example_regions(result))
            write_result(out_dir, result, figures, json_output, quiet, "report written to")

    run_guarded(work, debug)


def write_result(out_dir: Path, result, figures, json_output: bool, quiet: bool, note: str) -> None:
    """Write the report of ``result`` into ``out_dir`` (``figures``: ``{name: PNG}`` or a callable returning
    them, called after the tables are written), then print the summary JSON or the table."""
    from .report import print_summary, summary_json, write_report
    from .report_extras import write_extras

    directory = write_report(out_dir, result.regions, result.columns, result.summary,
                             extra=lambda directory: write_extras(directory, result, figures), files=result.files)
    if json_output:
        sys.stdout.write(summary_json(result.summary))
    elif not quiet:
        print_summary(result.summary, Console())
    if not quiet:
        print_outcome(result.summary)
        stderr.print(f"{note} {directory}/", highlight=False)


def score_one_shard(shard: str, out_dir: Path, predictions: str, truth: list, regions, policies, options: dict,
                    quiet: bool) -> None:
    """``score --shard i/n``: write shard i's partial report, or skip it when already complete."""
    from .shards import parse_shard, score_shard

    index, count = parse_shard(shard)
    with ProgressReporter(not quiet) as progress:
        status, partial = score_shard(out_dir, (index, count), predictions, truth, str(regions) if regions else None,
                                      progress=progress, policies=policies, **options)
    if not quiet:
        start, stop = partial["rows"]
        done = "already complete, skipped" if status == "skipped" else "scored"
        stderr.print(f"shard {index}/{count} (regions {start + 1}..{stop}) {done}: partial report in {out_dir}/; "
                     "combine all shards with bpnet-eval merge", highlight=False)


@app.command()
def merge(
    partials: List[Path] = typer.Argument(..., help="The partial report directories of shards 1..n "
                                          "(score --shard i/n --out DIR)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report directory for the merged report."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table."),
    plots: Optional[bool] = typer.Option(None, "--plots/--no-plots", help="Draw PNG figures into the report "
                                         "(default: on when matplotlib is installed)."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary JSON (= summary.json) to stdout."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
):
    """Merge the partial reports of score --shard 1/n .. n/n into the report an unsharded score writes."""
    from .plots import draw_figures, resolve_plots
    from .report_extras import example_regions
    from .shards import merge as merge_partials

    def work():
        prepare_output(out)
        draw_plots = resolve_plots(plots)
        result = merge_partials(list(partials))
        figures = draw_figures(result.columns, result.summary, example_regions(result)) if draw_plots else {}
        write_result(out, result, figures, json_output, quiet, f"merged {len(partials)} shard(s); report written to")

    run_guarded(work, debug)


def print_outcome(summary: dict) -> None:
    """Policy outcomes on stderr: warnings, renamed chromosomes, skipped and padded regions."""
    for warning in summary.get("warnings", []):
        stderr.print(f"bpnet-eval: warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    for path, renamed in summary.get("chromosome_names_mapped", {}).items():
        pairs = ", ".join(f"{a} → {b}" for a, b in list(renamed.items())[:5]) + (", ..." if len(renamed) > 5 else "")
        stderr.print(f"bpnet-eval: note: chromosome names matched to {path}: {pairs}", markup=False, highlight=False,
                     soft_wrap=True)
    for key, what in (("skipped", "not scored (see skipped.tsv)"), ("padded", "padded with zeros past a chromosome end")):
        if summary.get(key):
            stderr.print(f"bpnet-eval: note: {len(summary[key])} region(s) {what}", highlight=False)


@app.command()
def check(
    predictions: Path = typer.Argument(..., help="HDF5 predictions (logits + log counts, any known layout), "
                                       "comma-separated predicted bigWigs or bpnet-lite .npz pair (need --regions)."),
    truth: List[Path] = typer.Argument(..., help="One bigWig per predicted track, or one HDF5 file of counts."),
    regions: Optional[Path] = typer.Option(None, "--regions", "-r", help="BED or narrowPeak regions (default: the "
                                           "coordinates stored in PREDICTIONS)."),
    pred_pseudocount: float = typer.Option(0.0, "--pred-pseudocount", help=PRED_PSEUDOCOUNT_HELP),
    pred_logcounts: str = typer.Option("log", "--pred-logcounts", help=PRED_LOGCOUNTS_HELP),
    batch_size: int = typer.Option(1024, help="Regions per batch while values are checked."),
    logits_dataset: Optional[str] = typer.Option(None, help="HDF5 dataset of the predicted profile."),
    logcounts_dataset: Optional[str] = typer.Option(None, help="HDF5 dataset of the predicted log counts."),
    profile_kind: Optional[str] = typer.Option(None, help="What the profile dataset holds: logits, probs or counts."),
    head: Optional[int] = typer.Option(None, help="BPReveal head to check (default: the first)."),
    truth_dataset: Optional[str] = typer.Option(None, help="HDF5 dataset of observed counts in a TRUTH HDF5."),
    off_end: str = typer.Option("error", "--off-end", help=OFF_END_HELP),
    nonfinite: str = typer.Option("error", "--nonfinite", help=NONFINITE_HELP),
    allow_external_links: bool = typer.Option(False, "--allow-external-links", help=EXTERNAL_HELP),
    values: bool = typer.Option(True, "--values/--no-values", help="Also read every value (finite predictions, "
                                "non-negative observed counts); --no-values checks only shapes and coordinates."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
):
    """Validate inputs without scoring: print what was detected and every problem found (exit 3 if any)."""
    from .validate import format_findings, run_check

    def work():
        configure_threads()
        findings = run_check(str(predictions), [str(t) for t in truth], str(regions) if regions else None,
                             truth_dataset=truth_dataset, policies=Policies(off_end, nonfinite, allow_external_links),
                             batch_size=batch_size, scan_values=values, logits_dataset=logits_dataset,
                             logcounts_dataset=logcounts_dataset, profile_kind=profile_kind, head=head,
                             pred_pseudocount=pred_pseudocount, pred_logcounts=pred_logcounts)
        sys.stdout.write(format_findings(findings))
        if findings.problems:
            fail(f"{len(findings.problems)} problem(s) found; the first: {findings.problems[0].message}",
                 findings.problems[0].exit_code)

    run_guarded(work, debug)


@app.command()
def compare(
    report_a: Path = typer.Argument(..., help="Report directory of model A (written by 'bpnet-eval score')."),
    report_b: Path = typer.Argument(..., help="Report directory of model B, over the same regions."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory for compare.tsv and compare.json "
                                       "(default: ./bpnet-eval-compare-<A>-vs-<B>)."),
    resamples: int = typer.Option(2000, help="Bootstrap resamples of the regions."),
    confidence: float = typer.Option(0.95, help="Coverage of the bootstrap interval."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    top: int = typer.Option(10, help="Regions listed per metric as the most changed."),
    metric: Optional[str] = typer.Option(None, help="Metric whose most-changed regions are printed "
                                         "(default: profile_mnll)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No tables."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
):
    """Compare two score reports region by region: B - A per metric, bootstrap CI, win rate of B."""
    from .compare import changed_table, compare_reports, comparison_table, headline_metric, write_comparison

    def work():
        comparison = compare_reports(report_a, report_b, n_resamples=resamples, confidence=confidence, seed=seed,
                                     top=top)
        shown = headline_metric(comparison, metric)
        directory = write_comparison(out or Path(f"bpnet-eval-compare-{report_a.resolve().name}-vs-"
                                                 f"{report_b.resolve().name}"), comparison)
        if not quiet:
            console = Console() if sys.stdout.isatty() else Console(width=140)  # a pipe or file: no truncation
            console.print(comparison_table(comparison))
            console.print(changed_table(comparison, shown))
            stderr.print(f"comparison written to {directory}/", highlight=False)

    run_guarded(work, debug)


def exit_now(code: int) -> None:
    """Flush stdout and stderr and end the process at once: every report file is written and closed by then,
    and the interpreter's teardown (unloading torch) would add about 0.4 s to every run."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or EXIT_RUNTIME
    os._exit(code)


def run(args: list) -> int:
    """Run the command line ``args``; return the exit code. Typer/click usage errors become one line and 2,
    like the tool's own errors."""
    configure_caches()  # before matplotlib & co. look for a writable HOME
    try:
        code = app(args=args, prog_name="bpnet-eval", standalone_mode=False)
    except UsageErrorTypes as err:
        hint = f" (see: {err.ctx.command_path} --help)" if getattr(err, "ctx", None) else ""
        message = " ".join(err.format_message().split())
        stderr.print(f"bpnet-eval: error: {message}{hint}", markup=False, highlight=False, soft_wrap=True)
        return getattr(err, "exit_code", EXIT_USAGE) or EXIT_USAGE
    except ClickAbort:
        stderr.print("bpnet-eval: error: interrupted; no report was written", highlight=False)
        return 130
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else EXIT_RUNTIME)
    return code if isinstance(code, int) else 0


def main():
    """Entry point of the ``bpnet-eval`` script."""
    args = sys.argv[1:]
    if not args:
        app()  # prints the help
    exit_now(run(args))
