"""Sharded scoring for the schedulers users already have (SLURM arrays, Snakemake, Nextflow).

``score --shard i/n`` scores one contiguous, chunk-aligned range of regions and writes a
*partial report*; ``merge`` combines the partial reports of shards ``1..n`` into exactly the
report an unsharded run writes (the summary is recomputed from every region's values, never
averaged across shards).

Shards are numbered from 1, like ``sbatch --array=1-n`` task ids (``--shard auto/n`` reads
``SLURM_ARRAY_TASK_ID``). A partial report directory holds:

* ``regions.tsv``: the shard's per-region rows, with ``row`` (1-based global region number) first;
* ``columns.npz``: the same values at full precision, with the shard's coordinates;
* ``partial.json``: the partial marker: shard, rows, a fingerprint of the inputs and settings, the
  validation findings ``merge`` needs, and the row count and sha256 of ``columns.npz`` (``merge``
  refuses a ``columns.npz`` that is not the one written with it). No ``summary.json`` is written.

The directory is one unit (``report.files.output_unit``): assembled beside ``--out`` and swapped in
whole, so ``--out`` holds the complete partial report of one run or what it held before.

A rerun of a shard whose complete partial report (same fingerprint) exists is skipped, so a
preempted array can simply be resubmitted.
"""

import hashlib
import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import __version__
from .errors import InputError, UsageError
from .examples import example_regions
from .groups import read_all_groups
from .inputs import read_rows
from .options import Job, Policies, ReadOptions, RunOptions, ScoreOptions
from .pipeline import ScoreResult, run_job, summarize_scores
from .regions import Regions
from .report.files import output_unit, prepare_output, write_file
from .report.tables import REGIONS_FILE, regions_tsv
from .sources import open_predictions
from .validate import Findings

PARTIAL_JSON, COLUMNS_FILE = "partial.json", "columns.npz"
PARTIAL_FORMAT = "bpnet-eval partial report"
PARTIAL_VERSION = 3  # 2: options recorded as the read / scoring / run option sets; 3: columns.npz row count + sha256
SLURM_TASK_VARIABLE = "SLURM_ARRAY_TASK_ID"
# Option sets recorded in partial.json; ``run`` (RunOptions) may differ between shards: it changes no number.
DECISIVE_OPTIONS = ("read", "scoring")
_COORDINATES = ("_chrom", "_start", "_end", "_peak")


def parse_shard(text: str, environ=os.environ) -> tuple:
    """``"i/n"`` (1-based) or ``"auto/n"`` (i from ``SLURM_ARRAY_TASK_ID``) → ``(i, n)``."""
    index, _, count = str(text).partition("/")
    if index == "auto":
        index = environ.get(SLURM_TASK_VARIABLE, "")
        if not index:
            raise UsageError(f"--shard {text}: {SLURM_TASK_VARIABLE} is not set; give the shard as i/n "
                             "(1-based), or run inside a SLURM array job (sbatch --array=1-n)")
    try:
        index, count = int(index), int(count)
    except ValueError:
        raise UsageError(f"--shard '{text}' is not i/n; give e.g. --shard 3/8 (shards are numbered 1..n)")
    if count < 1 or not 1 <= index <= count:
        raise UsageError(f"--shard {index}/{count}: shards are numbered 1..n with n >= 1 "
                         "(SLURM: sbatch --array=1-n, then --shard auto/n)")
    return index, count


def shard_rows(n_regions: int, index: int, count: int, chunk_rows: int = 1) -> tuple:
    """Rows ``start..stop`` of shard ``index`` (1-based) of ``count``: contiguous, whole chunks of
    ``chunk_rows`` regions spread as evenly as possible (later shards may be empty when ``count``
    exceeds the number of chunks)."""
    chunk_rows = max(1, int(chunk_rows))
    n_chunks = -(-n_regions // chunk_rows)
    first, last = (index - 1) * n_chunks // count, index * n_chunks // count
    return min(n_regions, first * chunk_rows), min(n_regions, last * chunk_rows)


def file_stamp(path: str) -> dict:
    """Size and modification time of an input file, so shards of different files are not merged."""
    try:
        status = os.stat(path)
    except OSError:
        return {"path": str(path)}
    return {"path": str(path), "size": status.st_size, "mtime_ns": status.st_mtime_ns}


def job_options(job: Job) -> dict:
    """The job's option sets as JSON-ready dictionaries (``read``, ``scoring``, ``run``) and its regions."""
    return {"read": asdict(job.read), "scoring": asdict(job.scoring), "run": asdict(job.run),
            "regions": None if job.regions is None else str(job.regions)}


def fingerprint(files: dict, options: dict, n_regions: int, count: int) -> str:
    """A hash of what decides the numbers: input files, reading and scoring options, N and the number of shards."""
    decisive = {k: options[k] for k in DECISIVE_OPTIONS}
    text = json.dumps({"files": files, "options": decisive, "n_regions": n_regions, "shards": count,
                       "version": __version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def job_of(partial: dict) -> Job:
    """The job a partial report was scored from (every region's rows, the recorded options)."""
    options = partial["options"]
    read = dict(options["read"])
    read["policies"] = Policies(**read["policies"])
    return Job(partial["predictions"], partial["truth"], options["regions"], ReadOptions(**read),
               ScoreOptions(**options["scoring"]), RunOptions(**options["run"]))


def read_partial(directory) -> Optional[dict]:
    """The content of ``directory/partial.json``, or None when there is none (shard not finished)."""
    path = Path(directory) / PARTIAL_JSON
    if not path.exists():
        return None
    try:
        partial = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable partial report ({err}); rerun that shard")
    if partial.get("format") != PARTIAL_FORMAT:
        raise InputError(f"{path}: not a bpnet-eval partial report; give directories written by score --shard")
    if partial.get("format_version") != PARTIAL_VERSION:
        raise InputError(f"{path}: a partial report of another bpnet-eval version; rerun that shard with this one")
    return partial


def prediction_layout(job: Job) -> tuple:
    """``(N, regions per chunk)`` of the predictions, opened only to look at their shape."""
    preds = open_predictions(job.predictions, job.regions, **job.read.prediction_options)
    try:
        return preds.n, preds.chunk_rows
    finally:
        preds.close()


def score_shard(out_dir, shard: tuple, job: Job, progress=None) -> tuple:
    """Score shard ``(i, n)`` of ``job`` into ``out_dir`` as a partial report; ``(status, partial)`` where status
    is ``"scored"``, or ``"skipped"`` when a complete partial report of the same shard and inputs exists.
    ``out_dir`` is claimed first (``report.files.prepare_output``) and replaced as a whole when the shard is done."""
    with prepare_output(out_dir, "partial", job_input_paths(job)):
        return _score_shard(Path(out_dir), shard, job, progress)


def job_input_paths(job: Job) -> list:
    """The job's input files (paths only; in-memory inputs have none)."""
    truth = job.truth if isinstance(job.truth, (list, tuple)) else [job.truth]
    return [p for p in (job.predictions, *truth, job.regions, *job.read.ensemble, *job.scoring.groups)
            if isinstance(p, (str, os.PathLike))]


def _score_shard(out: Path, shard: tuple, job: Job, progress) -> tuple:
    index, count = shard
    n_regions, chunk_rows = prediction_layout(job)
    if job.scoring.plan.pooled_auprc:
        raise UsageError("the pooled auPRC (--preset bpnet, --metrics all) needs every region in one process; run "
                         "it without --shard, or name the metrics with --metrics a,b,...")
    predictions, truth = str(job.predictions), [str(t) for t in job.truth]
    files = {"predictions": file_stamp(predictions), "truth": [file_stamp(t) for t in truth],
             "regions": file_stamp(str(job.regions)) if job.regions else None,
             "ensemble": [file_stamp(p) for member in job.read.ensemble for p in str(member).split(",")]}
    options = job_options(job)
    stamp = fingerprint(files, options, n_regions, count)
    try:
        existing = read_partial(out)
    except InputError:  # unreadable, or of another version: scored again
        existing = None
    if existing and existing.get("fingerprint") == stamp and existing.get("shard") == [index, count] \
            and columns_intact(out, existing):
        return "skipped", existing
    start, stop = shard_rows(n_regions, index, count, chunk_rows)
    result = run_job(replace(job, rows=(start, stop)), progress)
    state = result.partial
    with output_unit(out, "partial") as unit:
        write_file(unit / REGIONS_FILE, regions_tsv(result.regions, {"row": np.arange(start, stop) + 1.0,
                                                                     **result.columns}))
        save_columns(unit / COLUMNS_FILE, result.regions, result.columns)
        findings = state["findings"]
        partial = {"format": PARTIAL_FORMAT, "format_version": PARTIAL_VERSION, "shard": [index, count], "rows": [start, stop],
                   "n_regions": n_regions, "chunk_rows": chunk_rows, "fingerprint": stamp,
                   "predictions": predictions, "truth": truth, "files": files,
                   "options": options, "columns": list(result.columns), "track_names": result.track_names,
                   "regions_source": result.regions.source, "settings": state["settings"], "inputs": state["inputs"],
                   "findings": {"detected": findings.detected, "skipped": findings.skipped, "padded": findings.padded,
                                "chrom_names": findings.chrom_names, "warnings": state["structural_warnings"]},
                   "non_integer": state["non_integer"],
                   "columns_file": {"name": COLUMNS_FILE, "rows": stop - start,
                                    "sha256": file_sha256(unit / COLUMNS_FILE)}}
        write_file(unit / PARTIAL_JSON, json.dumps(partial, indent=2) + "\n")
    return "scored", partial


def save_columns(path: Path, regions: Regions, columns: dict) -> None:
    """The shard's coordinates and per-region values, float64, in one ``.npz`` (flushed to disk)."""
    arrays = {"_chrom": np.asarray(regions.chrom, dtype=str), "_start": regions.start, "_end": regions.end}
    if regions.peak is not None:
        arrays["_peak"] = regions.peak
    with open(path, "wb") as handle:
        np.savez(handle, **arrays, **{name: np.asarray(v, dtype=np.float64) for name, v in columns.items()})
        handle.flush()
        os.fsync(handle.fileno())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def columns_intact(directory, partial: dict) -> bool:
    try:
        verified_columns(directory, partial)
        return True
    except InputError:
        return False


def verified_columns(directory, partial: dict) -> dict:
    """The arrays of ``directory/columns.npz``, once its sha256 and row count match what ``partial.json``
    recorded when the shard was written (a file changed, truncated or swapped with another shard's is refused)."""
    path = Path(directory) / COLUMNS_FILE
    recorded = partial.get("columns_file") or {}
    start, stop = partial["rows"]
    if not path.is_file():
        raise InputError(f"{directory}: no {COLUMNS_FILE}; the partial report is incomplete, rerun that shard")
    if file_sha256(path) != recorded.get("sha256"):
        raise InputError(f"{directory}: {COLUMNS_FILE} is not the file written with its {PARTIAL_JSON} (sha256 "
                         "differs: changed, or swapped with another shard's); rerun that shard")
    try:
        arrays = load_columns(directory)
    except (OSError, ValueError) as err:
        raise InputError(f"{directory}: {COLUMNS_FILE} cannot be read ({err}); rerun that shard")
    lengths = {name: len(values) for name, values in arrays.items()}
    wrong = {name: n for name, n in lengths.items() if n != stop - start}
    if recorded.get("rows") != stop - start or wrong:
        n = next(iter(wrong.values()), recorded.get("rows"))
        raise InputError(f"{directory}: {COLUMNS_FILE} holds {n} rows but {PARTIAL_JSON} records rows "
                         f"{start + 1}..{stop} ({stop - start}); rerun that shard")
    return arrays


def check_shards(partials: list, directories: list) -> None:
    """Raise unless the partial reports are shards 1..n of one run, each once, covering every region."""
    first, first_dir = partials[0], directories[0]
    for partial, directory in zip(partials[1:], directories[1:]):
        if partial["fingerprint"] != first["fingerprint"]:
            decisive = [{**p, "options": {k: p["options"][k] for k in DECISIVE_OPTIONS}, "shard": p["shard"][1]}
                        for p in (partial, first)]
            differs = [k for k in ("files", "options", "n_regions", "shard") if decisive[0].get(k) != decisive[1].get(k)]
            what = "the number of shards" if differs == ["shard"] else ", ".join(differs) or "the bpnet-eval version"
            raise UsageError(f"{directory} and {first_dir} come from different runs ({what} differ); "
                             "merge the shards of one score command only")
    count = first["shard"][1]
    seen = {}
    for partial, directory in zip(partials, directories):
        index = partial["shard"][0]
        if index in seen:
            raise UsageError(f"shard {index}/{count} is given twice ({seen[index]} and {directory}); give each shard once")
        seen[index] = directory
    missing = sorted(set(range(1, count + 1)) - set(seen))
    if missing:
        listed = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise UsageError(f"shard(s) {listed} of {count} are missing (given {len(seen)}); finish or rerun them "
                         f"with score --shard i/{count}, then merge all {count} directories")
    bounds = sorted(tuple(p["rows"]) for p in partials)
    covered = 0
    for start, stop in bounds:
        if start != covered:
            raise UsageError(f"the shards' rows do not tile regions 0..{first['n_regions']} (gap or overlap at row "
                             f"{covered}); rerun the shards with one score command")
        covered = stop
    if covered != first["n_regions"]:
        raise UsageError(f"the shards cover {covered} of {first['n_regions']} regions; rerun the missing rows")


def merged_findings(partials: list) -> Findings:
    """The validation findings of the whole run: structural findings (the same in every shard) plus
    every shard's skipped and padded rows and the non-integer count of all of them."""
    first = partials[0]["findings"]
    findings = Findings(detected=first["detected"], chrom_names=first["chrom_names"], warnings=list(first["warnings"]))
    for partial in partials:
        findings.skipped.update({int(row): reason for row, reason in partial["findings"]["skipped"].items()})
        findings.padded.update({int(row): reason for row, reason in partial["findings"]["padded"].items()})
    findings.warn_non_integer(sum(int(p["non_integer"]) for p in partials))
    return findings


def load_columns(directory) -> dict:
    with np.load(Path(directory) / COLUMNS_FILE, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def merge(directories: Sequence, examples: bool = True) -> ScoreResult:
    """Combine the partial reports of shards ``1..n`` into the result an unsharded ``score`` returns; with
    ``examples``, the example regions of the figures are read again from the inputs (which must exist)."""
    if not directories:
        raise UsageError("give the partial report directories of every shard (score --shard i/n --out DIR)")
    partials = []
    for directory in directories:
        partial = read_partial(directory)
        if partial is None:
            raise InputError(f"{directory}: no {PARTIAL_JSON}; that shard has not finished (or this is not a "
                             "score --shard output); rerun it, then merge")
        partials.append(partial)
    check_shards(partials, list(map(str, directories)))
    order = sorted(range(len(partials)), key=lambda k: partials[k]["rows"][0])
    partials = [partials[k] for k in order]
    arrays = [verified_columns(directories[k], partial) for k, partial in zip(order, partials)]
    names = [name for name in partials[0]["columns"]]
    for partial in partials:
        if partial["rows"][0] < partial["rows"][1] and partial["columns"] != names:
            raise InputError(f"shards list different columns ({names} vs {partial['columns']}); rerun them with one command")
    filled = [a for a, p in zip(arrays, partials) if p["rows"][0] < p["rows"][1]]
    columns = {name: np.concatenate([a[name] for a in filled]) for name in names}
    first = partials[0]
    peak = np.concatenate([a["_peak"] for a in filled]) if "_peak" in filled[0] else None
    table = Regions(np.concatenate([a["_chrom"] for a in filled]).astype(object),
                    np.concatenate([a["_start"] for a in filled]), np.concatenate([a["_end"] for a in filled]),
                    peak, first["regions_source"])
    job = job_of(first)
    groupings = read_all_groups(job.scoring.groups, table, len(table))
    summary, files = summarize_scores(columns, table, merged_findings(partials), first["settings"], first["inputs"],
                                      job.scoring.plan, first["track_names"], groupings=groupings)
    shown = example_regions(columns, table, lambda rows: read_rows(job, rows)) if examples else None
    return ScoreResult(table, columns, summary, first["track_names"], files, shown, groupings=groupings)
