"""``report.html``: one self-contained page (summary table, figures as base64 PNGs, settings), readable offline."""

import base64
import html
import json
import os

from .. import __version__
from .tables import count_rows, grouping_note, grouping_rows, metric_rows, summary_title

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; font-family: ui-monospace, monospace; }
thead th { background: #f3f5f8; position: sticky; top: 0; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.muted { color: #666; }
"""

FIGURE_CAPTIONS = {
    "counts_scatter.png": "Predicted log counts against ln(1 + observed total counts), one point per region "
                          "(density of regions per hexagon).",
    "profile_histograms.png": "Per-region profile MNLL and, when computed, JSD distance with its shuffled "
                              "baselines; the dashed line is the median.",
    "profile_examples.png": "Observed counts and the predicted profile scaled to the predicted counts for "
                            "the best, median and worst region by MNLL.",
}


def _table(header, rows, table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def setting_text(value) -> str:
    """A setting as readable text: nested settings as ``key: value`` pairs, lists comma-separated."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {setting_text(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(setting_text(v) for v in value) or "none"
    return value if isinstance(value, str) else json.dumps(value)


def input_rows(inputs: dict) -> list:
    """``(input, what)`` rows: each input's path made absolute (relative to where the run started), then what
    was detected in it."""
    rows = []
    for name, described in inputs.items():
        if not isinstance(described, dict):
            rows.append((name, str(described)))
            continue
        paths = described.get("paths") or ([described["path"]] if described.get("path") else [])
        shown = [p if p.startswith("<") else os.path.abspath(p) for p in map(str, paths)]
        details = {k: v for k, v in described.items() if k not in ("path", "paths")}
        rows.append((name, "; ".join(shown + ([setting_text(details)] if details else []))))
    return rows


def render_html(summary: dict, figures: dict, title: str, note: str = "", regions: dict = None) -> str:
    """The page: the per-region metrics, the means per region group, the count metrics, the figures
    (``figures`` maps PNG file names to their bytes, embedded as data URIs; ``note`` says why they are
    missing, if they are), the best and worst regions (``regions``: ``{"best": (header, rows), "worst":
    ...}``, rows from ``tables.extreme_region_rows``), the settings and the inputs."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="muted">{html.escape(summary_title(summary))} &middot; bpnet-eval {__version__}</p>',
             "<h2>Summary</h2>", _table(*metric_rows(summary, groups=False), "summary")]
    if summary.get("groups"):
        header, rows = metric_rows(summary)
        keep = [0, 1] + list(range(6, len(header)))
        parts += ["<h3>Means by region group</h3>",
                  _table(["metric", "mean (all)"] + header[6:], [[row[k] for k in keep] for row in rows], "groups")]
    parts += ["<h3>Counts across regions</h3>", _table(*count_rows(summary), "counts")]
    if summary.get("region_groups"):
        parts.append("<h2>Region groups</h2>")
        parts.append('<p class="muted">Per group of each <code>--groups</code> grouping: the mean of every per-region '
                     "column and the count metrics across the group's regions; a region in several groups counts in "
                     "each (<code>groups.tsv</code> holds the same numbers).</p>")
        for name, described in summary["region_groups"].items():
            parts += [f"<h3>{html.escape(name)}</h3>", f'<p class="muted">{html.escape(grouping_note(described))}</p>',
                      _table(*grouping_rows(summary, name), f"groups-{html.escape(name)}")]
    parts.append("<h2>Figures</h2>")
    if not figures:
        parts.append(f'<p class="muted">{html.escape(note or "No figures were drawn.")}</p>')
    for name, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        caption = FIGURE_CAPTIONS.get(name, name)
        parts.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(name)}: {html.escape(caption)}</figcaption></figure>")
    if regions:
        parts.append("<h2>Best and worst regions</h2>")
        parts.append('<p class="muted">By profile MNLL, among the regions with at least the median observed total '
                     "of the regions with reads; the region copies as <code>chrom:start-end</code> into a genome "
                     "browser (1-based start).</p>")
        for kind in ("best", "worst"):
            parts += [f"<h3>{kind.capitalize()}</h3>", _table(*regions[kind], f"{kind}-regions")]
    settings = summary.get("settings", {})
    parts += ["<h2>Settings</h2>",
              _table(["setting", "value"], [(k, setting_text(v)) for k, v in settings.items()], "settings"),
              "<h2>Inputs</h2>", _table(["input", "path and what was read"], input_rows(summary.get("inputs", {})),
                                        "inputs")]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
