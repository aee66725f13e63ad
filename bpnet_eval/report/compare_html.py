"""``compare.html``: one self-contained page of a comparison (leaderboards per region group, the figure, two
reports' B - A view, the settings), in the style of ``report.html``."""

import base64
import html
import os

from .. import __version__
from .compare_tables import changed_rows, group_winner_rows, leaderboard_rows, pairwise_rows
from .html import STYLE, _table

INTRO = ("For each metric the models are ranked by their mean over the regions every model defines. "
         "<em>− best</em> is the mean of model − best region by region; its interval is a paired percentile "
         "bootstrap (regions resampled with replacement, the same resamples for every model, metric and group); "
         "<em>wins</em> is the fraction of regions where the model beats the best; <em>≈best</em> marks a model "
         "whose interval holds 0: indistinguishable from the best. <em>counts_pearson</em> ranks Pearson's r of the "
         "predicted log counts across the regions (its <em>mean</em> is r; no win rate). The intervals are per pair, not adjusted for "
         "the number of models or for the best being chosen from the data.")


def render_comparison_html(comparison: dict, figure: bytes = None, note: str = "", metric: str = None) -> str:
    """The page: models, the leaderboards over all regions, the figure (``figure``: PNG bytes, or ``note``
    saying why there is none), the best model per group and each group's leaderboards, two reports' B - A
    view with the regions whose ``metric`` changed most, and the settings."""
    title = f"bpnet-eval compare: {len(comparison['models'])} models"
    models = [(m["name"], os.path.abspath(m["report"])) for m in comparison["models"]]
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="muted">{comparison["n_regions"]} regions &middot; {comparison["n_resamples"]} bootstrap '
             f"resamples &middot; bpnet-eval {__version__}</p>",
             "<h2>Models</h2>", _table(["model", "report"], models, "models"),
             "<h2>Leaderboards: all regions</h2>", f"<p>{INTRO}</p>",
             _table(*leaderboard_rows(comparison, "all"), "leaderboard-all"), "<h2>Figure</h2>"]
    if figure:
        data = base64.b64encode(figure).decode("ascii")
        parts.append(f'<figure><img alt="compare.png" src="data:image/png;base64,{data}"><figcaption>compare.png: '
                     "per metric, each model's mean difference from the best with its interval (hollow: "
                     "indistinguishable from the best).</figcaption></figure>")
    else:
        parts.append(f'<p class="muted">{html.escape(note or "No figure was drawn.")}</p>')
    groups = [g for g in comparison["leaderboard"] if g != "all"]
    if groups:
        header, rows = group_winner_rows(comparison)
        parts += ["<h2>Best model by region group</h2>", _table(header, rows, "group-winners")]
        for group in groups:
            parts += [f"<h3>Leaderboards: {html.escape(group)} ({comparison['groups'][group]} regions)</h3>",
                      _table(*leaderboard_rows(comparison, group), f"leaderboard-{html.escape(group)}")]
    if "metrics" in comparison:
        parts += ["<h2>B - A</h2>", f"<p>A = {html.escape(models[0][0])}, B = {html.escape(models[1][0])}</p>",
                  _table(*pairwise_rows(comparison), "pairwise")]
        if metric:
            parts += [f"<h3>Regions whose {html.escape(metric)} changed most</h3>",
                      _table(*changed_rows(comparison, metric), "most-changed")]
    settings = [("resamples", comparison["n_resamples"]), ("confidence", comparison["confidence"]),
                ("seed", comparison["seed"]), ("metrics", ", ".join(comparison["metric_names"]))]
    parts += ["<h2>Settings</h2>", _table(["setting", "value"], settings, "settings")]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
