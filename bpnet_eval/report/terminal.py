"""What the terminal shows of a report: the summary table and the policy outcomes."""

from rich import box
from rich.console import Console
from rich.table import Table

from .tables import SEED_LOSSES, grouping_rows, summary_table_rows, summary_title


def summary_table(summary: dict) -> Table:
    """The summary as a rich table (rows from ``summary_table_rows``)."""
    header, rows = summary_table_rows(summary)
    table = Table(title=summary_title(summary))
    for k, name in enumerate(header):
        table.add_column(name, no_wrap=k == 0, justify="left" if k == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def compact_rows(metrics, track_names) -> list:
    """``(label, column or None)`` rows of the compact table: each metric followed by its per-track columns
    (``<metric>_<track>``) labelled by the track, indented; the profile metrics last, under a ``profile_``
    heading row (column None), without that prefix."""
    per_track = {f"{m}_{t}" for m in metrics for t in track_names if f"{m}_{t}" in metrics}
    joint = [m for m in metrics if m not in per_track]
    rows = []
    for profile in (False, True):
        chosen = [m for m in joint if m.startswith("profile_") == profile]
        if profile and chosen:
            rows.append(("profile_…", None))
        for metric in chosen:
            indent = "  " if profile else ""
            rows.append((indent + (metric[len("profile_"):] if profile else metric), metric))
            rows += [(f"{indent}  {t}", f"{metric}_{t}") for t in track_names if f"{metric}_{t}" in per_track]
    return rows


def reading_value(value) -> str:
    """A number for reading: four significant digits (the files keep full precision)."""
    return "nan" if value is None else f"{value:.4g}"


def compact_tables(summary: dict) -> list:
    """The summary as tables that fit 80 columns: statistics over all regions (``compact_rows``, four
    significant digits, the undefined count only where some are undefined), then the means per region group
    and the count metrics, each group a column."""
    tracks = summary.get("settings", {}).get("track_names", [])
    metrics = summary["metrics"]
    rows = compact_rows(metrics, tracks)
    undefined = any(stats["n_undefined"] for stats in metrics.values())
    main = Table(title=summary_title(summary), box=box.SIMPLE_HEAD, pad_edge=False)
    for k, name in enumerate(["metric", "mean", "median", "q1", "q3"] + (["undef."] if undefined else [])):
        main.add_column(name, no_wrap=True, justify="left" if k == 0 else "right")
    for label, metric in rows:
        stats = metrics.get(metric)
        main.add_row(label, *(reading_value(stats[s]) if stats else "" for s in ("mean", "median", "q1", "q3")),
                     *([str(stats["n_undefined"]) if stats else ""] if undefined else []))
    groups = {"all": summary, **summary.get("groups", {})}
    by_group = Table(title="counts across regions" if len(groups) == 1 else "means by region group, and counts "
                     "across regions", box=box.SIMPLE_HEAD, pad_edge=False)
    for k, name in enumerate(["metric"] + list(groups)):
        by_group.add_column(name, no_wrap=True, justify="left" if k == 0 else "right")
    if len(groups) > 1:
        for label, metric in rows:
            by_group.add_row(label, *(reading_value(g["metrics"][metric]["mean"]) if metric else ""
                                      for g in groups.values()))
    for statistic in summary["counts"]:
        by_group.add_row(f"counts {statistic}", *(reading_value(g["counts"][statistic]) for g in groups.values()))
    return [main, by_group]


GROUP_LABEL_WIDTH = 16  # a longer group label is cut with an ellipsis on the terminal (files keep it whole)
SHORT_HEADERS = {"profile_mnll": "MNLL", "count_log1p_mse": "count MSE", "count_log_mse": "count MSE",
                 "mixture_loss": "mixture",
                 "counts pearson": "pearson", "counts spearman": "spearman"}


def grouping_tables(summary: dict) -> list:
    """One table per ``--groups`` grouping that fits 80 columns: per group, the regions, the means of the seed
    losses and the count Pearson/Spearman, four significant digits."""
    tables = []
    for name, described in summary.get("region_groups", {}).items():
        header, rows = grouping_rows(summary, name, SEED_LOSSES, ("pearson", "spearman"), reading_value)
        table = Table(title=f"groups of {name}: means, and counts across regions", caption=f"{described['n_in_no_group']} region(s) in no group, "
                      f"{described['n_in_several_groups']} in several",
                      box=box.SIMPLE_HEAD, pad_edge=False, caption_justify="left")
        for k, label in enumerate(header):
            table.add_column(SHORT_HEADERS.get(label, label), no_wrap=True, justify="left" if k == 0 else "right",
                             max_width=GROUP_LABEL_WIDTH if k == 0 else None, overflow="ellipsis")
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return tables


def print_summary(summary: dict, console: Console, wide: bool = False) -> None:
    """Print the summary. On a pipe or a file: the full table, as wide as it needs so that no number is cut.
    On a terminal: the full table when it fits, else ``compact_tables``, which fit 80 columns; ``wide``: the
    full table in any case, as wide as it needs."""
    table = summary_table(summary)
    needed = console.measure(table, options=console.options.update_width(10_000)).maximum
    if not console.is_terminal:
        console = Console(file=console.file, width=max(needed, 80), color_system=None)
    elif needed > console.width and not wide:
        for part in compact_tables(summary) + grouping_tables(summary):
            console.print(part)
        return
    if needed > console.width:  # wide: as wide as the table needs (the terminal wraps or scrolls)
        console = Console(file=console.file, width=needed, force_terminal=True, color_system=console.color_system)
    console.print(table)
    for part in grouping_tables(summary):
        console.print(part)


def print_outcome(summary: dict, stderr: Console) -> None:
    """Policy outcomes on ``stderr``: warnings, renamed chromosomes, skipped and padded regions."""
    for warning in summary.get("warnings", []):
        stderr.print(f"bpnet-eval: warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    for path, renamed in summary.get("chromosome_names_mapped", {}).items():
        pairs = ", ".join(f"{a} → {b}" for a, b in list(renamed.items())[:5]) + (", ..." if len(renamed) > 5 else "")
        stderr.print(f"bpnet-eval: note: chromosome names matched to {path}: {pairs}", markup=False, highlight=False,
                     soft_wrap=True)
    for key, what in (("skipped", "not scored (see skipped.tsv)"), ("padded", "padded with zeros past a chromosome end")):
        if summary.get(key):
            stderr.print(f"bpnet-eval: note: {len(summary[key])} region(s) {what}", highlight=False)
