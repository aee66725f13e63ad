"""``bpnet-eval compare``: two score reports over the same regions, region by region."""

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .common import Debug, Quiet, run_guarded, stderr


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
    quiet: Quiet = False,
    debug: Debug = False,
):
    """Compare two score reports region by region: B - A per metric, bootstrap CI, win rate of B."""
    from ..compare import changed_table, compare_reports, comparison_table, headline_metric, write_comparison

    def work():
        from ..report.files import prepare_output

        out_dir = out or Path(f"bpnet-eval-compare-{report_a.resolve().name}-vs-{report_b.resolve().name}")
        with prepare_output(out_dir, "comparison", [report_a, report_b]):  # checked and locked before any work
            comparison = compare_reports(report_a, report_b, n_resamples=resamples, confidence=confidence,
                                         seed=seed, top=top)
            shown = headline_metric(comparison, metric)
            directory = write_comparison(out_dir, comparison)
        if not quiet:
            console = Console() if sys.stdout.isatty() else Console(width=140)  # a pipe or file: no truncation
            console.print(comparison_table(comparison))
            console.print(changed_table(comparison, shown))
            stderr.print(f"comparison written to {directory}/", highlight=False)

    run_guarded(work, debug)
