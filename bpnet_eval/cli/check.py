"""``bpnet-eval check``: validate the inputs as ``score`` would, list every problem, score nothing."""

import sys
from typing import Annotated

import typer

from ..options import (Dtype, EnsembleLogcounts, Job, NonFinite, OffEnd, PredLogcounts, PredLogcountsPer,
                       RegionsFormat, RunOptions, Smooth)
from .common import (GroupsOption, ChromsOption, LengthOption, WindowCenterOption, Ensemble, EnsembleLogcountsOption,
                     INPUTS, BatchSize, CountLossWeight, Debug, DtypeOption, ExternalLinks, Head, LogcountsDataset,
                     LogitsDataset, MetricsOption, NonFiniteOption, OffEndOption, PredLogcountsOption, PredLogcountsPerOption, Predictions,
                     PredPseudocount, PresetOption, ProfileKindOption, RegionsFile, RegionsFormatOption, Seed,
                     SmoothOption, SmoothSigma, SmoothWidth, TrackNames, Truth, TruthDataset, fail, input_paths,
                     CountTargetOption, read_options, run_guarded, score_options)


def check(
    predictions: Predictions,
    truth: Truth,
    ensemble: Ensemble = None,
    ensemble_logcounts: EnsembleLogcountsOption = EnsembleLogcounts.mean_log,
    track_names: TrackNames = None,
    regions: RegionsFile = None,
    regions_format: RegionsFormatOption = RegionsFormat.auto,
    groups: GroupsOption = None,
    window_center: WindowCenterOption = None,
    chroms: ChromsOption = None,
    length: LengthOption = None,
    pred_pseudocount: PredPseudocount = 0.0,
    pred_logcounts: PredLogcountsOption = PredLogcounts.log,
    pred_logcounts_per: PredLogcountsPerOption = PredLogcountsPer.region,
    logits_dataset: LogitsDataset = None,
    logcounts_dataset: LogcountsDataset = None,
    profile_kind: ProfileKindOption = None,
    head: Head = None,
    truth_dataset: TruthDataset = None,
    count_loss_weight: CountLossWeight = 1.0,
    metrics: MetricsOption = "default",
    preset: PresetOption = None,
    smooth: SmoothOption = Smooth.none,
    smooth_sigma: SmoothSigma = 7.0,
    smooth_width: SmoothWidth = 81,
    seed: Seed = 0,
    count_target: CountTargetOption = None,
    off_end: OffEndOption = OffEnd.error,
    nonfinite: NonFiniteOption = NonFinite.error,
    allow_external_links: ExternalLinks = False,
    values: Annotated[bool, typer.Option(
        "--values/--no-values", rich_help_panel=INPUTS,
        help="Also read every value (finite predictions, non-negative observed counts); --no-values checks only "
             "shapes and coordinates.")] = True,
    dtype: DtypeOption = Dtype.float64,
    batch_size: BatchSize = None,
    debug: Debug = False,
):
    """Validate inputs without scoring: print what was detected and every problem found (exit 3 if any).

    Takes score's options, so that a value that would overflow with them (e.g. --dtype float32, a large
    --count-loss-weight) is found here too."""

    def work():
        from ..pipeline import check_job
        from ..validate import format_findings

        job = Job(*input_paths(predictions, truth, regions),
                  read_options(pred_pseudocount, pred_logcounts, logits_dataset, logcounts_dataset, profile_kind,
                               head, truth_dataset, off_end, nonfinite, allow_external_links, regions_format,
                               window_center, chroms, length, ensemble, ensemble_logcounts, pred_logcounts_per),
                  score_options(count_loss_weight, dtype, track_names, metrics, preset, smooth, smooth_sigma,
                                smooth_width, seed, groups, count_target=count_target),
                  RunOptions(batch_size=batch_size))
        findings = check_job(job, scan_values=values)
        sys.stdout.write(format_findings(findings))
        if findings.problems:
            fail(f"{len(findings.problems)} problem(s) found; the first: {findings.problems[0].message}",
                 findings.problems[0].exit_code)

    run_guarded(work, debug)
