"""Report writers: regions.tsv, summary.json, summary.tsv and the terminal table.

Every file is written under a temporary name and renamed when complete; ``summary.json`` is
written last, so its presence marks a finished report.
"""

import json
import math
import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .errors import InputError

REGIONS_FILE, SUMMARY_JSON, SUMMARY_TSV = "regions.tsv", "summary.json", "summary.tsv"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def format_value(value) -> str:
    """A number as text that round-trips to 1e-10 relative; undefined values as ``nan``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.12g}"


def regions_tsv(regions, columns: dict) -> str:
    """One header line, then one row per region in input order."""
    header = ["chrom", "start", "end"] + (["peak"] if regions.peak is not None else []) + list(columns)
    fields = [np.asarray(regions.chrom, dtype=str), regions.start.astype(str), regions.end.astype(str)]
    if regions.peak is not None:
        fields.append(regions.peak.astype(int).astype(str))
    fields += [np.char.mod("%.12g", values) for values in columns.values()]
    body = ["\t".join(row) for row in zip(*fields)]
    return "\n".join(["\t".join(header)] + body) + "\n"


def summary_rows(summary: dict):
    """``(group, metric, statistic, value)`` for every number in the summary."""
    groups = [("all", summary)] + list(summary.get("groups", {}).items())
    for group, part in groups:
        yield group, "n_regions", "count", part["n_regions"]
        for metric, stats in part["metrics"].items():
            for statistic, value in stats.items():
                yield group, metric, statistic, value
        for statistic, value in part["counts"].items():
            yield group, "counts", statistic, value
        for track, stats in part.get("counts_per_track", {}).items():
            for statistic, value in stats.items():
                yield group, f"counts_{track}", statistic, value


def summary_tsv(summary: dict) -> str:
    """The summary in long format: ``group, metric, statistic, value``."""
    lines = ["group\tmetric\tstatistic\tvalue"]
    lines += [f"{g}\t{m}\t{s}\t{format_value(v)}" for g, m, s, v in summary_rows(summary)]
    return "\n".join(lines) + "\n"


def write_report(out_dir, regions, columns: dict, summary: dict) -> Path:
    """Write the report files into ``out_dir`` (created if needed); return the directory."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / SUMMARY_JSON).unlink(missing_ok=True)
        write_atomic(out / REGIONS_FILE, regions_tsv(regions, columns))
        write_atomic(out / SUMMARY_TSV, summary_tsv(summary))
        write_atomic(out / SUMMARY_JSON, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    except OSError as err:
        raise InputError(f"{out}: cannot write the report ({err.strerror or err}); give a writable directory with --out")
    return out


def display_value(value) -> str:
    """A number for the terminal table: six significant digits."""
    return "nan" if value is None else f"{value:.6g}"


def summary_table(summary: dict) -> Table:
    """The summary as a rich table: one row per per-region column, then the count metrics;
    with peak labels, the mean over peaks and over non-peaks beside the mean over all regions."""
    groups = summary.get("groups", {})
    table = Table(title=f"bpnet-eval: {summary['n_regions']} regions, count loss weight "
                        f"{summary['count_loss_weight']:g}")
    table.add_column("metric", no_wrap=True)
    for statistic in ("mean", "median", "q1", "q3"):
        table.add_column(statistic, justify="right")
    table.add_column("undefined", justify="right")
    for group in groups:
        table.add_column(f"mean ({group})", justify="right")
    for metric, stats in summary["metrics"].items():
        table.add_row(metric, *(display_value(stats[s]) for s in ("mean", "median", "q1", "q3")),
                      str(stats["n_undefined"]), *(display_value(g["metrics"][metric]["mean"]) for g in groups.values()))
    for statistic, value in summary["counts"].items():
        table.add_row(f"counts {statistic}", display_value(value), "", "", "", "",
                      *(display_value(g["counts"][statistic]) for g in groups.values()))
    return table


def print_summary(summary: dict, console: Console) -> None:
    console.print(summary_table(summary))

