"""The comparison's figure (``compare.png``): models × metrics, each model's mean difference from the best
model with its bootstrap interval, over all regions. Drawn from the comparison dict; nothing is computed
here. matplotlib is optional (``report.figures``)."""

import numpy as np

from .compare_tables import ARROWS
from .figures import new_figure, png_bytes

COMPARE_FIGURE = "compare.png"
PANEL_COLUMNS = 3


def comparison_figure(comparison: dict, metrics):
    """One panel per metric of ``metrics``, the models in the order given (top to bottom): the best at 0
    (black diamond), each other model at ``mean(model - best)`` with its interval (filled when the interval
    excludes 0, hollow when the model is indistinguishable from the best).

    Returns
    -------
    figure, drawn : the matplotlib Figure and, per metric, the arrays drawn (``difference``, ``low``, ``high``,
    NaN where there is none).
    """
    names = [m["name"] for m in comparison["models"]]
    boards = comparison["leaderboard"]["all"]
    columns = min(PANEL_COLUMNS, len(metrics))
    rows = -(-len(metrics) // columns)
    panel_height = 0.8 + 0.28 * len(names)
    left = 0.3 + 0.075 * max(len(n) for n in names)
    figure = new_figure(left + 3.6 * columns, 0.5 + panel_height * rows, margins=(left, 0.25, 0.55, 0.35),
                        rows=rows, columns=columns, gap=0.65)
    percent = f"{100 * comparison['confidence']:g}%"
    y = np.arange(len(names))[::-1]
    drawn = {}
    for p, metric in enumerate(metrics):
        board = boards[metric]
        by_model = {e["model"]: e for e in board["models"]}
        value = lambda key: np.array([np.nan if by_model[n][key] is None else by_model[n][key] for n in names])  # noqa: E731
        difference, low, high = value("difference"), value("ci_low"), value("ci_high")
        drawn[metric] = {"difference": difference, "low": low, "high": high}
        ax = figure.add_subplot(rows, columns, p + 1)
        ax.axvline(0.0, color="0.6", linewidth=0.8)
        verdicts = [by_model[n]["verdict"] for n in names]
        for k, v in enumerate(verdicts):
            if v == "best":
                ax.plot([0.0], [y[k]], marker="D", color="black", linestyle="none")
            elif not np.isnan(difference[k]):
                if not np.isnan(low[k]):
                    ax.plot([low[k], high[k]], [y[k], y[k]], color="tab:blue", linewidth=1.6)
                ax.plot([difference[k]], [y[k]], marker="o", color="tab:blue", linestyle="none",
                        markerfacecolor="white" if v == "indistinguishable" else "tab:blue")
        ax.set_yticks(y)
        ax.set_yticklabels(names if p % columns == 0 else [])
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.set_title(f"{metric} {ARROWS[board['better']]}  (best: {board['best'] or 'undefined'})", fontsize=9)
        ax.tick_params(labelsize=8)
        if p >= len(metrics) - columns:
            ax.set_xlabel(f"model − best, {percent} CI", fontsize=8)
    return figure, drawn


def comparison_png(comparison: dict, metrics) -> bytes:
    """``comparison_figure`` rendered as PNG."""
    return png_bytes(comparison_figure(comparison, metrics)[0])
