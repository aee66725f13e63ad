"""``bpnet-eval score``: build the job from the options, run it, write the report (or one shard's partial)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..environment import torch_threads
from ..options import (BIGWIG_MEMORY_MB, READ_AHEAD_MB, Dtype, EnsembleLogcounts, Job, NonFinite, OffEnd,
                       PredLogcounts, PredLogcountsPer, RegionsFormat, RunOptions, Smooth)
from .common import (ChromsOption, LengthOption, WindowCenterOption, Ensemble, EnsembleLogcountsOption,
                     CLUSTER, OUTPUT, PERFORMANCE, BatchSize, CountLossWeight, Debug, DtypeOption, ExternalLinks,
                     GroupsOption, Head, JsonOutput, LogcountsDataset, LogitsDataset, MetricsOption, NonFiniteOption, OffEndOption,
                     Plots, PredLogcountsOption, PredLogcountsPerOption, Predictions, PredPseudocount, PresetOption, ProfileKindOption,
                     ProgressReporter, Quiet, RegionsFile, RegionsFormatOption, Seed, SmoothOption, SmoothSigma,
                     SmoothWidth, TrackNames, Truth, TruthDataset, Wide, draw_plots, figure_painter, input_paths,
                     CountTargetOption, read_options, run_guarded, score_options, stderr, write_and_show)


def score(
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
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", rich_help_panel=OUTPUT, show_default=False,
        help="Report directory (default: ./bpnet-eval-<PREDICTIONS name>).")] = None,
    quiet: Quiet = False,
    plots: Plots = None,
    json_output: JsonOutput = False,
    wide: Wide = False,
    device: Annotated[str, typer.Option(
        "--device", rich_help_panel=PERFORMANCE,
        help="auto (the CPU for the default metrics and --preset bpnet in float64, without torch: faster than a GPU "
             "end to end; else the GPU when torch sees one), cpu, cuda or cuda:N.")] = "auto",
    dtype: DtypeOption = Dtype.float64,
    batch_size: BatchSize = None,
    read_workers: Annotated[Optional[int], typer.Option(
        "--read-workers", rich_help_panel=PERFORMANCE, show_default=False,
        help="Processes reading the observed bigWigs ahead (default: half the CPUs, at most 4, or one per file "
             "for files too big to keep, up to one per CPU; 0: a thread of the main process, also for predicted "
             "bigWigs).")] = None,
    read_ahead_mb: Annotated[int, typer.Option(
        "--read-ahead-mb", rich_help_panel=PERFORMANCE,
        help="Shared memory (MB) the reading processes fill ahead of the computation (never fewer than "
             "the batches in use plus two per process), and memory for the predictions read ahead (1-16 "
             "batches).")] = READ_AHEAD_MB,
    bigwig_memory_mb: Annotated[int, typer.Option(
        "--bigwig-memory-mb", rich_help_panel=PERFORMANCE,
        help="Memory (MB) the run's bigWigs keep decoded, shared equally among them (at most 128 MB a file: up to "
             "four files keep what one alone would); a file over its share is read block by block, which is slower. "
             "Raise it for a run of many large tracks on a machine with memory to spare.")] = BIGWIG_MEMORY_MB,
    shard: Annotated[Optional[str], typer.Option(
        "--shard", rich_help_panel=CLUSTER, show_default=False,
        help="i/n: score only shard i of n (1-based, contiguous chunk-aligned regions) into a partial report in "
             "--out; auto/n takes i from SLURM_ARRAY_TASK_ID. Combine with bpnet-eval merge. A shard whose partial "
             "report is complete is skipped.")] = None,
    debug: Debug = False,
):
    """Score PREDICTIONS against TRUTH: per-region MNLL, log1p-MSE and mixture loss, and a summary."""

    def work():
        from ..report.files import prepare_output

        scoring = score_options(count_loss_weight, dtype, track_names, metrics, preset, smooth, smooth_sigma,
                                smooth_width, seed, groups, count_target)
        job = Job(*input_paths(predictions, truth, regions),
                  read_options(pred_pseudocount, pred_logcounts, logits_dataset, logcounts_dataset, profile_kind,
                               head, truth_dataset, off_end, nonfinite, allow_external_links, regions_format,
                               window_center, chroms, length, ensemble, ensemble_logcounts, pred_logcounts_per),
                  scoring, RunOptions(device, batch_size, read_workers, read_ahead_mb, torch_threads(),
                                      bigwig_memory_mb))
        out_dir = out or Path(f"bpnet-eval-{Path(str(predictions).split(',')[0]).stem}{'-ensemble' if ensemble else ''}")
        # --out checked (new, empty or our own output; no input inside) and locked before any work, until the end
        with prepare_output(out_dir, "report" if shard is None else "partial",
                            [str(predictions), *truth, regions, *(groups or []),
                             *(p for member in ensemble or () for p in member.split(","))]):
            if shard is not None:
                return score_one_shard(shard, out_dir, job, quiet)
            from ..pipeline import run_job

            # the painter is forked here, and run_job forks the readers, before torch is imported
            with figure_painter(draw_plots(plots, quiet or json_output)) as paint:
                with ProgressReporter(not quiet) as progress:
                    result = run_job(job, progress, on_columns=paint.early)  # the example panels start then
                figures = paint(result.columns, result.summary, result.examples)  # drawn once regions.tsv is started
                write_and_show(out_dir, result, figures, json_output, quiet, "report written to", wide)

    run_guarded(work, debug)


def score_one_shard(shard: str, out_dir: Path, job: Job, quiet: bool) -> None:
    """``score --shard i/n``: write shard i's partial report, or skip it when already complete."""
    from ..shards import parse_shard, score_shard

    index, count = parse_shard(shard)
    with ProgressReporter(not quiet) as progress:
        status, partial = score_shard(out_dir, (index, count), job, progress)
    if not quiet:
        start, stop = partial["rows"]
        done = "already complete, skipped" if status == "skipped" else "scored"
        stderr.print(f"shard {index}/{count} (regions {start + 1}..{stop}) {done}: partial report in {out_dir}/; "
                     "combine all shards with bpnet-eval merge", highlight=False, markup=False, soft_wrap=True)
