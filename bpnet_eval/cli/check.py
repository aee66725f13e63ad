"""``bpnet-eval check``: validate the inputs as ``score`` would, list every problem, score nothing."""

import sys
from typing import Annotated

import typer

from ..options import Job, NonFinite, OffEnd, PredLogcounts, RegionsFormat, RunOptions
from .common import (INPUTS, BatchSize, Debug, ExternalLinks, Head, LogcountsDataset, LogitsDataset,
                     NonFiniteOption, OffEndOption, PredLogcountsOption, Predictions, PredPseudocount,
                     ProfileKindOption, RegionsFile, RegionsFormatOption, Truth, TruthDataset, fail, input_paths,
                     read_options, run_guarded)


def check(
    predictions: Predictions,
    truth: Truth,
    regions: RegionsFile = None,
    regions_format: RegionsFormatOption = RegionsFormat.auto,
    pred_pseudocount: PredPseudocount = 0.0,
    pred_logcounts: PredLogcountsOption = PredLogcounts.log,
    logits_dataset: LogitsDataset = None,
    logcounts_dataset: LogcountsDataset = None,
    profile_kind: ProfileKindOption = None,
    head: Head = None,
    truth_dataset: TruthDataset = None,
    off_end: OffEndOption = OffEnd.error,
    nonfinite: NonFiniteOption = NonFinite.error,
    allow_external_links: ExternalLinks = False,
    values: Annotated[bool, typer.Option(
        "--values/--no-values", rich_help_panel=INPUTS,
        help="Also read every value (finite predictions, non-negative observed counts); --no-values checks only "
             "shapes and coordinates.")] = True,
    batch_size: BatchSize = 1024,
    debug: Debug = False,
):
    """Validate inputs without scoring: print what was detected and every problem found (exit 3 if any)."""

    def work():
        from ..pipeline import check_job
        from ..validate import format_findings

        job = Job(*input_paths(predictions, truth, regions),
                  read_options(pred_pseudocount, pred_logcounts, logits_dataset, logcounts_dataset, profile_kind,
                               head, truth_dataset, off_end, nonfinite, allow_external_links, regions_format),
                  run=RunOptions(batch_size=batch_size))
        findings = check_job(job, scan_values=values)
        sys.stdout.write(format_findings(findings))
        if findings.problems:
            fail(f"{len(findings.problems)} problem(s) found; the first: {findings.problems[0].message}",
                 findings.problems[0].exit_code)

    run_guarded(work, debug)
