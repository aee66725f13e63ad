"""The report's text: regions.tsv, summary.tsv, skipped.tsv, summary.json, and the rows of the summary
table (shown by the terminal and the HTML page). Pure functions of the result; nothing is written here."""

import json
import math

import numpy as np

REGIONS_FILE, SUMMARY_JSON, SUMMARY_TSV = "regions.tsv", "summary.json", "summary.tsv"
SKIPPED_FILE, GROUPS_FILE = "skipped.tsv", "groups.tsv"


def format_value(value) -> str:
    """A number as text that round-trips to 1e-10 relative; undefined values as ``nan``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.12g}"


REGION_ROWS_PER_PIECE = 2_048


def regions_tsv(regions, columns: dict, groupings=()):
    """The text of ``regions.tsv`` in pieces (bounded memory for any N): ``regions_header``, then one row
    per region in input order (``regions_rows``)."""
    yield regions_header(regions, columns, groupings)
    yield from regions_rows(regions, columns, groupings, 0, len(regions))


def regions_header(regions, columns: dict, groupings=()) -> str:
    """The header line of ``regions.tsv``: coordinates, ``peak``, one ``group_<name>`` column per grouping, then
    the per-region columns."""
    header = (["chrom", "start", "end"] + (["peak"] if regions.peak is not None else [])
              + [g.column_name for g in groupings] + list(columns))
    return "\t".join(header) + "\n"


def regions_rows(regions, columns: dict, groupings, start: int, stop: int):
    """The lines of ``regions.tsv`` of the regions ``start..stop`` (0-based, in input order) in pieces of at most
    ``REGION_ROWS_PER_PIECE`` rows: coordinates, ``peak``, the region's groups of each grouping (joined by commas,
    empty when none), then the numbers as ``format_value`` writes them."""
    labels = [g.column() for g in groupings]
    # one %-format per row: 3x faster than formatting column by column
    row_format = "\t".join(["%s", "%s", "%s"] + (["%d"] if regions.peak is not None else [])
                           + ["%s"] * len(groupings) + ["%.12g"] * len(columns)) + "\n"
    for first in range(start, stop, REGION_ROWS_PER_PIECE):
        rows = slice(first, min(first + REGION_ROWS_PER_PIECE, stop))
        fields = [np.asarray(regions.chrom[rows], dtype=str).tolist(), regions.start[rows].tolist(),
                  regions.end[rows].tolist()]
        if regions.peak is not None:
            fields.append(regions.peak[rows].astype(int).tolist())
        fields += [column[rows].tolist() for column in labels]
        fields += [np.asarray(values[rows], dtype=np.float64).tolist() for values in columns.values()]
        yield "".join(row_format % row for row in zip(*fields))


def labelled_groups(summary: dict) -> list:
    """``(grouping, group, part)`` of every region group in the summary: ``all``, the peak labels (grouping
    ``peak``), then each ``--groups`` grouping's groups."""
    groups = [("all", "all", summary)] + [("peak", name, part) for name, part in summary.get("groups", {}).items()]
    for grouping, described in summary.get("region_groups", {}).items():
        groups += [(grouping, label, part) for label, part in described["groups"].items()]
    return groups


def summary_rows(summary: dict):
    """``(group, metric, statistic, value)`` for every number in the summary; a ``--groups`` group as
    ``<grouping>=<label>``."""
    groups = [(group if grouping in ("all", "peak") else f"{grouping}={group}", part)
              for grouping, group, part in labelled_groups(summary)]
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


def groups_tsv(summary: dict) -> str:
    """One row per region group (``labelled_groups``): ``grouping``, ``group``, ``n_regions``, the mean of every
    per-region column (``<column>_mean``) and the count metrics across the group's regions (``counts_<name>``)."""
    metrics, counts = list(summary["metrics"]), list(summary["counts"])
    lines = ["\t".join(["grouping", "group", "n_regions", *(f"{m}_mean" for m in metrics),
                        *(f"counts_{c}" for c in counts)])]
    for grouping, group, part in labelled_groups(summary):
        lines.append("\t".join([grouping, group, str(part["n_regions"]),
                                *(format_value(part["metrics"][m]["mean"]) for m in metrics),
                                *(format_value(part["counts"][c]) for c in counts)]))
    return "\n".join(lines) + "\n"


def skipped_tsv(summary: dict) -> str:
    """Regions not scored (``row`` is 1-based, as in messages), with the reason; a header when none."""
    lines = ["row\tregion\treason"] + [f"{s['row']}\t{s['region']}\t{s['reason']}" for s in summary.get("skipped", [])]
    return "\n".join(lines) + "\n"


def summary_json(summary: dict) -> str:
    """The text of ``summary.json`` (also what ``score --json`` prints)."""
    return json.dumps(summary, indent=2, allow_nan=False) + "\n"


def display_value(value) -> str:
    """A number for the terminal table: six significant digits."""
    return "nan" if value is None else f"{value:.6g}"


def summary_title(summary: dict) -> str:
    return f"bpnet-eval: {summary['n_regions']} regions, count loss weight {summary['count_loss_weight']:g}"


def metric_rows(summary: dict, groups: bool = True):
    """``(header, rows)`` of the per-region metrics as text: mean, median, quartiles and the undefined count
    over all regions; with ``groups`` and peak labels, the mean over peaks and over non-peaks beside them."""
    parts = summary.get("groups", {}) if groups else {}
    header = ["metric", "mean", "median", "q1", "q3", "undefined"] + [f"mean ({group})" for group in parts]
    rows = [[metric, *(display_value(stats[s]) for s in ("mean", "median", "q1", "q3")), str(stats["n_undefined"]),
             *(display_value(g["metrics"][metric]["mean"]) for g in parts.values())]
            for metric, stats in summary["metrics"].items()]
    return header, rows


def count_rows(summary: dict):
    """``(header, rows)`` of the count metrics across regions: all regions, then each region group."""
    parts = {"all": summary, **summary.get("groups", {})}
    header = ["count metric"] + list(parts)
    rows = [[f"counts {statistic}", *(display_value(g["counts"][statistic]) for g in parts.values())]
            for statistic in summary["counts"]]
    return header, rows


SEED_LOSSES = ("profile_mnll", "count_log1p_mse", "count_log_mse", "mixture_loss")  # the count loss: per --count-target


def grouping_rows(summary: dict, name: str, metrics=None, counts=None, show=display_value):
    """``(header, rows)`` of one ``--groups`` grouping: per group, its region count, the mean of each of
    ``metrics`` and each of the count metrics ``counts`` across its regions (default: all of them; ``show``
    writes the numbers)."""
    described = summary["region_groups"][name]
    metrics = [m for m in (summary["metrics"] if metrics is None else metrics) if m in summary["metrics"]]
    counts = [c for c in (summary["counts"] if counts is None else counts) if c in summary["counts"]]
    header = ["group", "regions", *metrics, *(f"counts {c}" for c in counts)]
    rows = [[label, str(part["n_regions"]), *(show(part["metrics"][m]["mean"]) for m in metrics),
             *(show(part["counts"][c]) for c in counts)]
            for label, part in described["groups"].items()]
    return header, rows


def grouping_note(described: dict) -> str:
    """One line on where a grouping comes from and its regions in no group and in several."""
    return (f"{described['source']}: {described['rule']}; {described['n_in_no_group']} region(s) in no group, "
            f"{described['n_in_several_groups']} in several")


def summary_table_rows(summary: dict):
    """``(header, rows)`` of the one-table summary (the terminal's full table): ``metric_rows``, then the count
    metrics with their value under ``mean`` and the groups' values under theirs."""
    header, rows = metric_rows(summary)
    for count in count_rows(summary)[1]:
        rows.append([count[0], count[1], "", "", "", "", *count[2:]])
    return header, rows


def extreme_region_rows(regions, columns: dict, rows) -> tuple:
    """``(header, rows)`` of the regions at ``rows`` (e.g. the best or worst by MNLL): the 1-based row, the
    window as ``chrom:start-end`` (1-based start, as a genome browser takes it), the profile MNLL, the
    observed total and the count loss (``count_log1p_mse``, or ``count_log_mse`` under the ``ln K`` target)."""
    count_loss = "count_log_mse" if "count_log_mse" in columns else "count_log1p_mse"
    header = ["row", "region (1-based, genome browser)", "profile_mnll", "observed_counts", count_loss]
    out = []
    for row in (int(r) for r in rows):
        where = (f"{regions.chrom[row]}:{int(regions.start[row]) + 1}-{int(regions.end[row])}"
                 if regions.has_coordinates else "")
        out.append([str(row + 1), where, *(display_value(float(columns[name][row]))
                                            for name in ("profile_mnll", "observed_counts", count_loss))])
    return header, out
