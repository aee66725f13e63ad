"""What the terminal shows of a comparison: the leaderboards over all regions (two reports: B - A and the
regions that changed most), then the best model per region group. Tables fit 80 columns."""

from rich import box
from rich.console import Console
from rich.table import Table

from .compare_tables import changed_rows, group_winner_rows, joint_metrics, leaderboard_rows, pairwise_rows


def text_table(header, rows, title: str, caption: str = None) -> Table:
    """A rich table of text rows, first column left (folded when too long), the others right and unwrapped."""
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False, caption_justify="left")
    for k, name in enumerate(header):
        table.add_column(name, justify="left" if k == 0 else "right", no_wrap=k > 0, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def leaderboard_table(comparison: dict, metrics) -> Table:
    """The leaderboards of ``metrics`` over all regions."""
    models = len(comparison["models"])
    title = (f"bpnet-eval compare: {models} models over {comparison['n_regions']} regions "
             f"({comparison['n_resamples']} bootstrap resamples)")
    caption = ("− best: mean of model − best over the regions every model defines (counts_pearson: r across them "
               "less the best's); CI: paired bootstrap of it; wins: regions where the model beats the best; ≈best: "
               "the CI holds 0 (indistinguishable)")
    return text_table(*leaderboard_rows(comparison, "all", metrics), title, caption)


def pairwise_table(comparison: dict) -> Table:
    """Two reports: per metric B - A, its interval and the win rate of B (↓: lower is better, ↑: higher)."""
    title = (f"bpnet-eval compare: B - A over {comparison['n_regions']} regions "
             f"({comparison['n_resamples']} bootstrap resamples)")
    return text_table(*pairwise_rows(comparison), title)


def changed_table(comparison: dict, metric: str) -> Table:
    """Two reports: the regions whose ``metric`` changed most."""
    return text_table(*changed_rows(comparison, metric), f"regions whose {metric} changed most (B - A)")


def group_table(comparison: dict, metrics) -> Table:
    """The best model of ``metrics`` in each region group but ``all``, with the models indistinguishable from it."""
    header, rows = group_winner_rows(comparison, metrics)
    return text_table(header, [row for row in rows if row[0] != "all"], "best model by region group")


def print_comparison(comparison: dict, console: Console, metric: str) -> None:
    """Print the comparison: two reports, B - A per metric and the regions whose ``metric`` changed most;
    more, the leaderboards of the metrics that are not one track's column (all of them in compare.tsv).
    Then, when the regions have groups, the best model per group. A pipe or a file gets the tables as wide
    as they need."""
    if not console.is_terminal:
        console = Console(file=console.file, width=140, color_system=None)
    shown = joint_metrics(comparison["metric_names"])
    if "metrics" in comparison:
        console.print(pairwise_table(comparison))
        console.print(changed_table(comparison, metric))
    else:
        console.print(leaderboard_table(comparison, shown))
    if len(comparison["groups"]) > 1:
        console.print(group_table(comparison, shown))
