"""Report writers: regions.tsv, summary.json, summary.tsv and the terminal table.

Every file is written under a temporary name and renamed when complete; ``summary.json`` is
written last, so its presence marks a finished report.
"""

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
from rich.console import Console
from rich.table import Table

from .errors import InputError

REGIONS_FILE, SUMMARY_JSON, SUMMARY_TSV = "regions.tsv", "summary.json", "summary.tsv"
SKIPPED_FILE = "skipped.tsv"


def write_atomic(path: Path, text) -> None:
    """Write ``text`` (str, bytes, or an iterable of str pieces) to ``path`` through a temporary file
    renamed into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pieces = [text] if isinstance(text, (str, bytes)) else text
    try:
        with open(temporary, "wb" if isinstance(text, bytes) else "w") as handle:
            for piece in pieces:
                handle.write(piece)
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


REGION_ROWS_PER_PIECE = 20_000


def regions_tsv(regions, columns: dict):
    """The text of ``regions.tsv`` in pieces (bounded memory for any N): one header line, then one row
    per region in input order (numbers as ``format_value`` writes them)."""
    header = ["chrom", "start", "end"] + (["peak"] if regions.peak is not None else []) + list(columns)
    yield "\t".join(header) + "\n"
    # one %-format per row: 3x faster than formatting column by column
    row_format = "\t".join(["%s", "%s", "%s"] + (["%d"] if regions.peak is not None else [])
                           + ["%.12g"] * len(columns)) + "\n"
    for first in range(0, len(regions), REGION_ROWS_PER_PIECE):
        rows = slice(first, first + REGION_ROWS_PER_PIECE)
        fields = [np.asarray(regions.chrom[rows], dtype=str).tolist(), regions.start[rows].tolist(),
                  regions.end[rows].tolist()]
        if regions.peak is not None:
            fields.append(regions.peak[rows].astype(int).tolist())
        fields += [np.asarray(values[rows], dtype=np.float64).tolist() for values in columns.values()]
        yield "".join(row_format % row for row in zip(*fields))


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


def skipped_tsv(summary: dict) -> str:
    """Regions not scored (``row`` is 1-based, as in messages), with the reason; a header when none."""
    lines = ["row\tregion\treason"] + [f"{s['row']}\t{s['region']}\t{s['reason']}" for s in summary.get("skipped", [])]
    return "\n".join(lines) + "\n"


def summary_json(summary: dict) -> str:
    """The text of ``summary.json`` (also what ``score --json`` prints)."""
    return json.dumps(summary, indent=2, allow_nan=False) + "\n"


@contextmanager
def output_directory(out_dir, what: str = "the report"):
    """``out_dir`` as a Path, created if needed; an OSError while writing into it becomes one line."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        yield out
    except OSError as err:
        raise InputError(f"{out}: cannot write {what} ({err.strerror or err}); give a writable directory with --out")


def write_report(out_dir, regions, columns: dict, summary: dict, extra=None, files: Optional[dict] = None) -> Path:
    """Write the report files into ``out_dir`` (created if needed); return the directory.

    ``files`` maps further file names to their text (a preset's summary file); ``extra(directory)``
    writes further files (figures, HTML). Both come before ``summary.json``, which comes last."""
    with output_directory(out_dir) as out:
        (out / SUMMARY_JSON).unlink(missing_ok=True)
        write_atomic(out / REGIONS_FILE, regions_tsv(regions, columns))
        write_atomic(out / SUMMARY_TSV, summary_tsv(summary))
        write_atomic(out / SKIPPED_FILE, skipped_tsv(summary))
        for name, text in (files or {}).items():
            write_atomic(out / name, text)
        if extra is not None:
            extra(out)
        write_atomic(out / SUMMARY_JSON, summary_json(summary))
    return out


def display_value(value) -> str:
    """A number for the terminal table: six significant digits."""
    return "nan" if value is None else f"{value:.6g}"


def summary_title(summary: dict) -> str:
    return f"bpnet-eval: {summary['n_regions']} regions, count loss weight {summary['count_loss_weight']:g}"


def summary_table_rows(summary: dict):
    """``(header, rows)`` of the summary table, as text: one row per per-region column, then the count
    metrics; with peak labels, the mean over peaks and over non-peaks beside the mean over all regions."""
    groups = summary.get("groups", {})
    header = ["metric", "mean", "median", "q1", "q3", "undefined"] + [f"mean ({group})" for group in groups]
    rows = []
    for metric, stats in summary["metrics"].items():
        rows.append([metric, *(display_value(stats[s]) for s in ("mean", "median", "q1", "q3")),
                     str(stats["n_undefined"]), *(display_value(g["metrics"][metric]["mean"]) for g in groups.values())])
    for statistic, value in summary["counts"].items():
        rows.append([f"counts {statistic}", display_value(value), "", "", "", "",
                     *(display_value(g["counts"][statistic]) for g in groups.values())])
    return header, rows


def summary_table(summary: dict) -> Table:
    """The summary as a rich table (rows from ``summary_table_rows``)."""
    header, rows = summary_table_rows(summary)
    table = Table(title=summary_title(summary))
    for k, name in enumerate(header):
        table.add_column(name, no_wrap=k == 0, justify="left" if k == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def print_summary(summary: dict, console: Console) -> None:
    """Print the summary table; on a pipe or a file, as wide as it needs so that no number is cut."""
    table = summary_table(summary)
    if not console.is_terminal:
        needed = console.measure(table, options=console.options.update_width(10_000)).maximum
        console = Console(file=console.file, width=max(needed, 80), color_system=None)
    console.print(table)

