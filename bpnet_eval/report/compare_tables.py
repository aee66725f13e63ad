"""The text of a comparison (``bpnet-eval compare``): compare.tsv (the leaderboards), pairwise.tsv (two
reports: B - A), compare.json, and the rows shown by the terminal and the HTML page. Pure functions of the
comparison dict (``bpnet_eval.compare.compare_reports``); nothing is computed or written here."""

import json

from ..directions import metric_of
from .tables import display_value, format_value

COMPARE_TSV, COMPARE_JSON, PAIRWISE_TSV = "compare.tsv", "compare.json", "pairwise.tsv"
LEADERBOARD_FIELDS = ("group", "metric", "better", "rank", "model", "n", "mean", "difference", "ci_low", "ci_high",
                      "win_rate", "loss_rate", "verdict")
PAIRWISE_FIELDS = ("metric", "better", "n", "mean_a", "mean_b", "mean_difference", "ci_low", "ci_high",
                   "win_rate", "loss_rate")
ARROWS = {"lower": "↓", "higher": "↑"}
# How the verdicts read in tables (compare.tsv keeps the words).
VERDICT_MARKS = {"best": "best", "indistinguishable": "≈best", "worse": "", "better": "better?", "undefined": ""}


def leaderboard_tsv(comparison: dict) -> str:
    """One row per group, metric and model (best first): the fields of ``LEADERBOARD_FIELDS``."""
    lines = ["\t".join(LEADERBOARD_FIELDS)]
    for group, boards in comparison["leaderboard"].items():
        for metric, board in boards.items():
            for entry in board["models"]:
                values = [group, metric, board["better"], format_value(entry["rank"]), entry["model"],
                          format_value(board["n"])]
                values += [format_value(entry[f]) for f in LEADERBOARD_FIELDS[6:-1]] + [entry["verdict"]]
                lines.append("\t".join(values))
    return "\n".join(lines) + "\n"


def pairwise_tsv(comparison: dict) -> str:
    """Two reports: one row per metric, the fields of ``PAIRWISE_FIELDS`` (differences are B - A)."""
    lines = ["\t".join(PAIRWISE_FIELDS)]
    for name, result in comparison["metrics"].items():
        lines.append("\t".join([name, result["better"]] + [format_value(result[f]) for f in PAIRWISE_FIELDS[2:]]))
    return "\n".join(lines) + "\n"


def comparison_json(comparison: dict) -> str:
    """The text of ``compare.json``."""
    return json.dumps(comparison, indent=2, allow_nan=False) + "\n"


def joint_metrics(metrics) -> list:
    """The metrics that are not one track's column of another (``profile_mnll``, not ``profile_mnll_plus``;
    ``counts_pearson``, not per region, too)."""
    return [m for m in metrics if metric_of(m) in (m, None)]


def short_value(value) -> str:
    """A number for reading: four significant digits; nothing for an undefined value."""
    return "" if value is None else f"{value:.4g}"


def signed_value(value) -> str:
    """A difference for reading: four significant digits with its sign."""
    if value is None:
        return ""
    return "0" if value == 0 else f"{value:+.4g}"


def interval_text(low, high) -> str:
    return "" if low is None else f"[{short_value(low)}, {short_value(high)}]"


def rate_text(value) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def metric_label(metric: str, better: str) -> str:
    return f"{metric} {ARROWS[better]}"


def leaderboard_rows(comparison: dict, group: str, metrics=None):
    """``(header, rows)`` of a group's leaderboards as text: per metric (``metrics``, default all) a heading
    row ``metric ↓``, then each model (best first, indented) with its mean, its difference from the best, the
    interval of that difference, its win rate against the best and the verdict's mark."""
    percent = f"{100 * comparison['confidence']:g}%"
    header = ["metric / model", "mean", "− best", f"{percent} CI", "wins", ""]
    rows = []
    boards = comparison["leaderboard"][group]
    for metric in (metrics if metrics is not None else list(boards)):
        board = boards[metric]
        rows.append([metric_label(metric, board["better"]), "", "", "", "", ""])
        for entry in board["models"]:
            best = entry["verdict"] == "best"
            rows.append([f"  {entry['model']}", short_value(entry["mean"]),
                         "" if best else signed_value(entry["difference"]),
                         interval_text(entry["ci_low"], entry["ci_high"]), rate_text(entry["win_rate"]),
                         VERDICT_MARKS[entry["verdict"]]])
    return header, rows


def group_winner_rows(comparison: dict, metrics=None):
    """``(header, rows)``: per region group and metric, the best model and the models indistinguishable from
    it (comma-separated), over how many regions."""
    header = ["group", "metric", "regions", "best", "≈best"]
    rows = []
    for group, boards in comparison["leaderboard"].items():
        for metric in (metrics if metrics is not None else list(boards)):
            board = boards[metric]
            tied = [e["model"] for e in board["models"] if e["verdict"] == "indistinguishable"]
            rows.append([group, metric_label(metric, board["better"]), str(board["n"]), board["best"] or "",
                         ", ".join(tied)])
    return header, rows


def pairwise_rows(comparison: dict):
    """``(header, rows)`` of the two-report view: per metric mean A, mean B, B - A, its interval, and the
    fractions of regions where B is better and worse."""
    percent = f"{100 * comparison['confidence']:g}%"
    header = ["metric", "mean A", "mean B", "B - A", f"{percent} CI", "B better", "B worse"]
    rows = [[metric_label(name, r["better"]), short_value(r["mean_a"]), short_value(r["mean_b"]),
             short_value(r["mean_difference"]), interval_text(r["ci_low"], r["ci_high"]), rate_text(r["win_rate"]),
             rate_text(r["loss_rate"])] for name, r in comparison["metrics"].items()]
    return header, rows


def changed_rows(comparison: dict, metric: str):
    """``(header, rows)`` of the regions whose ``metric`` changed most (two reports)."""
    header = ["row", "region", "A", "B", "B - A"]
    rows = [[str(e["row"]), e["region"], display_value(e["a"]), display_value(e["b"]),
             display_value(e["difference"])]
            for e in comparison["metrics"][metric]["most_changed"]]
    return header, rows
