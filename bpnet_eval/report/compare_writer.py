"""Write a comparison directory: compare.tsv, pairwise.tsv (two reports), the figure, compare.html, then
compare.json, as one unit (``files.output_unit``, kind ``comparison``): replaced as a whole, in one step."""

from pathlib import Path

from .compare_figure import COMPARE_FIGURE
from .compare_html import render_comparison_html
from .compare_tables import COMPARE_JSON, COMPARE_TSV, PAIRWISE_TSV, comparison_json, leaderboard_tsv, pairwise_tsv
from .files import output_unit, write_file

COMPARE_HTML = "compare.html"
NO_FIGURE_NOTE = ("The figure was not drawn (--no-plots, or matplotlib is not installed: "
                  "pip install 'bpnet-eval[plots]').")


def write_comparison(out_dir, comparison: dict, figure: bytes = None, metric: str = None) -> Path:
    """Write ``comparison`` (``compare.compare_reports``) as the directory ``out_dir``: new, empty or an
    earlier comparison, never one holding a compared report. ``figure``: the PNG of ``compare.png``, if drawn;
    ``metric``: whose most-changed regions the page lists (two reports)."""
    reports = [m["report"] for m in comparison["models"]]
    with output_unit(out_dir, "comparison", reports) as unit:
        write_file(unit / COMPARE_TSV, leaderboard_tsv(comparison))
        if "metrics" in comparison:
            write_file(unit / PAIRWISE_TSV, pairwise_tsv(comparison))
        if figure:
            write_file(unit / COMPARE_FIGURE, figure)
        write_file(unit / COMPARE_HTML, render_comparison_html(comparison, figure, NO_FIGURE_NOTE, metric))
        write_file(unit / COMPARE_JSON, comparison_json(comparison))
    return Path(out_dir)
