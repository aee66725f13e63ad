"""``bpnet-eval compare``: two or more score reports over the same regions, region by region."""

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from .common import Debug, Plots, Quiet, draw_plots, run_guarded, stderr


def default_out(reports) -> Path:
    """``./bpnet-eval-compare-<A>-vs-<B>``, or with more reports ``./bpnet-eval-compare-<A>-and-<k>-more``."""
    first = reports[0].resolve().name
    if len(reports) == 2:
        return Path(f"bpnet-eval-compare-{first}-vs-{reports[1].resolve().name}")
    return Path(f"bpnet-eval-compare-{first}-and-{len(reports) - 1}-more")


def compare(
    reports: List[Path] = typer.Argument(..., help="Report directories (written by 'bpnet-eval score' or 'merge'), "
                                         "two or more, over the same regions in the same order.",
                                         show_default=False),
    name: Optional[List[str]] = typer.Option(None, "--name", "-n", show_default=False,
                                             help="A model's label, once per report in their order (default: "
                                                  "each report's directory name)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory for compare.tsv, compare.json, "
                                       "compare.html and compare.png (default: ./bpnet-eval-compare-<A>-vs-<B>, "
                                       "or ./bpnet-eval-compare-<A>-and-<k>-more)."),
    resamples: int = typer.Option(2000, help="Bootstrap resamples of the regions."),
    confidence: float = typer.Option(0.95, help="Coverage of the bootstrap interval."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    top: int = typer.Option(10, help="Two reports: regions listed per metric as the most changed."),
    metric: Optional[str] = typer.Option(None, help="Two reports: metric whose most-changed regions are printed "
                                         "(default: profile_mnll)."),
    plots: Plots = None,
    quiet: Quiet = False,
    debug: Debug = False,
):
    """Compare score reports region by region: a leaderboard per metric and region group with paired
    bootstrap intervals against the best model, win rates and an 'indistinguishable' mark; two reports also
    B - A."""
    from ..compare import compare_reports, headline_metric

    def work():
        from ..report.compare_tables import joint_metrics
        from ..report.compare_terminal import print_comparison
        from ..report.compare_writer import write_comparison
        from ..report.files import prepare_output

        out_dir = out or default_out(reports)
        drawn = draw_plots(plots, quiet)
        with prepare_output(out_dir, "comparison", reports):  # checked and locked before any work
            comparison = compare_reports(*reports, names=name, n_resamples=resamples, confidence=confidence,
                                         seed=seed, top=top)
            shown = headline_metric(comparison["metric_names"], metric)
            figure = None
            if drawn:
                from ..report.compare_figure import comparison_png
                figure = comparison_png(comparison, joint_metrics(comparison["metric_names"]))
            directory = write_comparison(out_dir, comparison, figure, shown if "metrics" in comparison else None)
        if not quiet and sys.stdout is not None:
            print_comparison(comparison, Console(), shown)
        if not quiet:
            stderr.print(f"comparison written to {directory}/", highlight=False, markup=False, soft_wrap=True)

    run_guarded(work, debug)
