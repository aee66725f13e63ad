"""``bpnet-eval merge``: the partial reports of ``score --shard 1/n .. n/n`` → the report an unsharded score writes."""

from pathlib import Path
from typing import Annotated, List

import typer

from .common import OUTPUT, Debug, JsonOutput, Plots, Quiet, Wide, draw_plots, run_guarded, write_and_show


def merge(
    partials: Annotated[List[Path], typer.Argument(
        help="The partial report directories of shards 1..n (score --shard i/n --out DIR).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", rich_help_panel=OUTPUT, show_default=False,
                                      help="Report directory for the merged report.")],
    quiet: Quiet = False,
    plots: Plots = None,
    json_output: JsonOutput = False,
    wide: Wide = False,
    debug: Debug = False,
):
    """Merge the partial reports of score --shard 1/n .. n/n into the report an unsharded score writes."""

    def work():
        from ..report.figures import draw_figures
        from ..report.files import prepare_output
        from ..shards import merge as merge_partials

        with prepare_output(out, "report", partials):  # checked and locked before any work; released at the end
            drawn = draw_plots(plots, quiet or json_output)
            result = merge_partials(list(partials), examples=drawn)
            figures = draw_figures(result.columns, result.summary, result.examples) if drawn else {}
            write_and_show(out, result, figures, json_output, quiet,
                           f"merged {len(partials)} shard(s); report written to", wide)

    run_guarded(work, debug)
