"""Report figures (PNG), drawn from the per-region columns and the summary; no metric is computed here.

matplotlib is the optional extra ``bpnet-eval[plots]``; it is imported only when a figure is
drawn, through the Agg canvas (no display, no global backend switch). Every drawing function
returns the figure and the arrays it drew, so tests can check them against the report.
"""

import importlib.util
import io
from typing import Optional

import numpy as np

from ..columns import predicted_total_logcounts, ranked_rows
from ..errors import UsageError

COUNTS_SCATTER, PROFILE_HISTOGRAMS, PROFILE_EXAMPLES = "counts_scatter.png", "profile_histograms.png", "profile_examples.png"
FIGURE_FILES = (COUNTS_SCATTER, PROFILE_HISTOGRAMS, PROFILE_EXAMPLES)
JSD_COLUMN = "profile_jsd_distance"
# Shuffled baselines drawn over the JSD histogram when the report has them: column → legend.
JSD_BASELINES = {"profile_jsd_shuffled": "prediction vs shuffled observed",
                 "profile_jsd_observed_shuffled": "observed vs shuffled observed"}
JSD_DISTANCE_MAX = float(np.sqrt(np.log(2.0)))
DPI = 110
# Titles at the height matplotlib would place them at (nothing is drawn above the axes): given, it does not measure
# every tick label to place them (15% of the example panel's drawing time; the same pixels)
TITLE_Y = 1.0


def plots_available(importable: bool = False) -> bool:
    """True when matplotlib (the ``plots`` extra) is installed: found without importing it (the import takes
    ~0.2 s, which the figure process spends beside the scoring instead), or with ``importable`` imported."""
    if not importable:
        return importlib.util.find_spec("matplotlib") is not None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_plots(requested: Optional[bool]) -> bool:
    """``--plots/--no-plots``: as given (``--plots`` checks that matplotlib imports), or (unset) on exactly when
    matplotlib is installed (one that is found but fails to import draws no figures: ``figures_or_none``)."""
    if requested is None:
        return plots_available()
    if requested and not plots_available(importable=True):
        raise UsageError("--plots needs matplotlib, which is not installed; install the extra with "
                         "pip install 'bpnet-eval[plots]' or pass --no-plots")
    return requested


def new_figure(width: float, height: float, margins=(0.8, 0.25, 0.6, 0.45), rows: int = 1, columns: int = 1,
               gap: float = 0.0, column_gap: Optional[float] = None):
    """A matplotlib Figure on an Agg canvas, with fixed ``margins`` (left, right, bottom, top) and ``gap``
    between subplots (``column_gap`` between columns, default ``gap``), in inches (a layout engine measures every
    label: 40% of the drawing time)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    left, right, bottom, top = margins
    column_gap = gap if column_gap is None else column_gap
    cell_width = (width - left - right - (columns - 1) * column_gap) / columns
    cell_height = (height - bottom - top - (rows - 1) * gap) / rows
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                           wspace=column_gap / cell_width, hspace=gap / cell_height)
    return figure


def png_bytes(figure) -> bytes:
    """The figure rendered as PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _statistic(summary: dict, column: str, name: str):
    return summary.get("metrics", {}).get(column, {}).get(name)


def plain_number(value, _position=None) -> str:
    """A tick label without mathtext: ``100``, ``1e+06``."""
    return f"{value:g}"


def count_ticks(top: float) -> list:
    """Ticks of a log-scale colour bar of counts from 1 to ``top``: 1, 2, 5, 10, 20, 50, ... up to ``top``, and ``top``
    itself where it lies more than a factor 1.5 past the last of them."""
    ticks = [step * 10 ** decade for decade in range(int(np.log10(max(top, 1.0))) + 1) for step in (1, 2, 5)]
    ticks = [tick for tick in ticks if tick <= top] or [1]
    return ticks + [int(top)] if top > 1.5 * ticks[-1] else ticks


def _fmt(value) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def counts_scatter(columns: dict, summary: dict):
    """Density (hexbin) of predicted log counts against ``ln(1 + observed total)``, correlations in the title."""
    track_names = summary["settings"]["track_names"]
    observed = np.log1p(columns["observed_counts"])
    predicted = predicted_total_logcounts(columns, track_names)
    keep = np.isfinite(observed) & np.isfinite(predicted)
    observed, predicted = observed[keep], predicted[keep]
    figure = new_figure(6.0, 5.2, margins=(0.75, 0.35, 0.6, 0.6))
    ax = figure.add_subplot()
    if observed.size:
        from matplotlib.ticker import FuncFormatter, NullFormatter

        cells = ax.hexbin(observed, predicted, gridsize=40, mincnt=1, bins="log", cmap="viridis", linewidths=0.2)
        bar = figure.colorbar(cells, ax=ax, label="regions per hexagon (log scale)")
        bar.set_ticks(count_ticks(float(np.max(cells.get_array()))))  # decades alone left one label below 10
        bar.ax.yaxis.set_major_formatter(FuncFormatter(plain_number))
        bar.ax.yaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlapped
        low = float(min(observed.min(), predicted.min()))
        high = float(max(observed.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="0.35", linestyle="--", linewidth=1, label="y = x")
        ax.legend(loc="upper left", frameon=False)
    counts = summary.get("counts", {})
    ax.set_title(f"Total counts, {observed.size} regions\nPearson r = {_fmt(counts.get('pearson'))}, "
                 f"Spearman ρ = {_fmt(counts.get('spearman'))}, MSE = {_fmt(counts.get('mse'))}", y=TITLE_Y)
    ax.set_xlabel("observed ln(1 + total counts)")
    ax.set_ylabel("predicted log counts")
    return figure, {"observed": observed, "predicted": predicted}


def _histogram_bins(values: np.ndarray):
    """Between 10 and 60 bins over the range of ``values``, and whether they are log-spaced: for positive
    values spanning more than a factor of 20 (MNLL grows with the counts), log-spaced bins."""
    n_bins = int(np.clip(np.sqrt(max(values.size, 1)), 10, 60))
    if values.size == 0:
        return np.linspace(0.0, 1.0, n_bins + 1), False
    low, high = float(values.min()), float(values.max())
    if low > 0 and high / low > 20:
        return np.geomspace(low, high, n_bins + 1), True
    return np.linspace(low, high if high > low else low + 1.0, n_bins + 1), False


def _defined(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def profile_histograms(columns: dict, summary: dict):
    """Histograms of per-region profile MNLL and, when the report has it, JSD distance with its shuffled baselines."""
    panels = ["profile_mnll"] + ([JSD_COLUMN] if JSD_COLUMN in columns else [])
    figure = new_figure(6.0 * len(panels), 4.6, columns=len(panels), gap=0.9)
    drawn = {}
    for k, column in enumerate(panels):
        ax = figure.add_subplot(1, len(panels), k + 1)
        values = _defined(columns[column])
        drawn[column] = values
        undefined = len(columns[column]) - values.size
        if column == JSD_COLUMN:
            bins = np.linspace(0.0, JSD_DISTANCE_MAX, 51)
            ax.hist(values, bins=bins, color="tab:blue", alpha=0.75, label="prediction vs observed")
            for baseline, legend in JSD_BASELINES.items():
                if baseline in columns:
                    drawn[baseline] = _defined(columns[baseline])
                    ax.hist(drawn[baseline], bins=bins, histtype="step", linewidth=1.6, label=legend)
            ax.set_xlabel("per-region JSD distance (nats^1/2, lower is better)")
            ax.legend(frameon=False, loc="upper left")
        else:  # regions without reads (MNLL exactly 0) are counted apart: on a log axis they would be one tall bar
            zero = int((values == 0).sum())
            values = drawn[column] = values[values != 0]
            bins, logarithmic = _histogram_bins(values)
            ax.hist(values, bins=bins, color="tab:blue", alpha=0.75)
            if logarithmic:
                from matplotlib.ticker import FuncFormatter

                ax.set_xscale("log")
                # plain numbers (100, 1000): matplotlib's 10^k labels are mathtext, whose parser takes ~0.03 s to build
                ax.xaxis.set_major_formatter(FuncFormatter(plain_number))
            ax.set_xlabel("per-region profile MNLL (nats, lower is better)" + (", log scale" if logarithmic else ""))
            if zero:
                ax.text(0.02, 0.97, f"not drawn: {zero} region(s) with MNLL 0 (no reads)", transform=ax.transAxes,
                        ha="left", va="top", fontsize=9, color="0.3")
        median = _statistic(summary, column, "median")
        if median is not None and (median > 0 or ax.get_xscale() == "linear"):
            ax.axvline(median, color="black", linestyle="--", linewidth=1)
        note = f", {undefined} undefined" if undefined else ""
        ax.set_title(f"{column}: median {_fmt(median)} ({values.size} regions drawn{note})", y=TITLE_Y)
        ax.set_ylabel("regions")
    return figure, drawn


def shown_track(observed: np.ndarray, predicted: np.ndarray, track: int) -> bool:
    """Whether an example region's ``track`` is drawn: it has observed counts, or at least 1% of the region's
    predicted counts (a strand with neither would be a flat line at 0, listed in the legend but not seen)."""
    return bool(observed[track].sum() > 0 or predicted[track].sum() >= 0.01 * predicted.sum())


def profile_examples(examples: list, observed: np.ndarray, predicted: np.ndarray, columns: dict, labels: list,
                     track_names: list):
    """One panel per example region: observed counts and the predicted profile, per track shown
    (``shown_track``; the second of two stranded tracks drawn downwards). More than two tracks: one small panel per
    track and example (``examples_by_track``)."""
    if len(track_names) > 2:
        return examples_by_track(examples, observed, predicted, columns, labels, track_names)
    figure = new_figure(11.0, 2.9 * max(len(examples), 1) + 0.25, margins=(0.75, 0.2, 0.55, 0.6),
                        rows=max(len(examples), 1), gap=0.55)
    _say_how_ranked(figure, columns)
    mirrored = len(track_names) == 2
    drawn = {"rows": [row for _, row in examples], "observed": [], "predicted": []}
    for k, (label, row) in enumerate(examples):
        ax = figure.add_subplot(len(examples), 1, k + 1)
        positions = np.arange(observed.shape[-1])
        for s, name in enumerate(track_names):
            if not shown_track(observed[k], predicted[k], s):
                continue
            sign = -1.0 if mirrored and s == 1 else 1.0
            colour = "tab:blue" if s == 0 else ("tab:red" if s == 1 else f"C{s + 2}")
            # observed above the prediction, so that a faint trace stays visible under a smooth prediction
            ax.plot(positions, sign * observed[k, s], color=colour, alpha=0.8, linewidth=0.9, zorder=3,
                    drawstyle="steps-mid", label=f"observed {name}")
            ax.plot(positions, sign * predicted[k, s], color="black" if s == 0 else "0.4", linewidth=1.0, zorder=2,
                    label=f"predicted {name}")
            drawn["observed"].append(sign * observed[k, s])
            drawn["predicted"].append(sign * predicted[k, s])
        if mirrored:
            ax.axhline(0.0, color="0.6", linewidth=0.6)
        ax.set_title(f"{label}: {labels[k]} — MNLL {columns['profile_mnll'][row]:.4g}, observed total "
                     f"{columns['observed_counts'][row]:.0f}, predicted total {predicted[k].sum():.0f}", fontsize=10,
                     y=TITLE_Y)
        ax.set_ylabel("counts" + (" (minus below 0)" if mirrored else ""))
        ax.set_xlim(0, observed.shape[-1] - 1)
        ax.legend(loc="upper right", fontsize=8, ncol=2, frameon=False)
    if examples:
        figure.axes[-1].set_xlabel("position in window")
    return figure, drawn


def _say_how_ranked(figure, columns: dict) -> None:
    """Above the panels, which regions "best" is the best of: those with many reads, not all (MNLL grows with the
    reads)."""
    pool = ranked_rows(columns)
    if pool.size:
        figure.text(0.5, 1 - 0.12 / figure.get_figheight(), f"ranked by profile MNLL among the {pool.size} regions "
                    f"with at least {np.min(columns['observed_counts'][pool]):.0f} observed reads (the median of the "
                    "regions with reads; MNLL grows with the reads)", ha="center", va="top", fontsize=9, color="0.3")


# More than two tracks: each track of each example region in a panel of its own, this tall (inches) up to
# EXAMPLE_TRACKS_HEIGHT for all of an example's tracks, and never less than EXAMPLE_TRACK_MIN_HEIGHT.
EXAMPLE_TRACK_HEIGHT, EXAMPLE_TRACKS_HEIGHT, EXAMPLE_TRACK_MIN_HEIGHT = 0.9, 7.5, 0.5


def examples_by_track(examples: list, observed: np.ndarray, predicted: np.ndarray, columns: dict, labels: list,
                      track_names: list):
    """``profile_examples`` of more than two tracks: a grid of one column per example region and one row per track,
    each panel with that track's observed counts (blue) and predicted profile (black) on its own scale, every track
    drawn (a flat line says that a track has nothing there); the region above each column, the track left of
    each row."""
    n_tracks, n_examples = len(track_names), max(len(examples), 1)
    height = max(EXAMPLE_TRACK_MIN_HEIGHT, min(EXAMPLE_TRACK_HEIGHT, EXAMPLE_TRACKS_HEIGHT / n_tracks))
    left = 0.25 + 0.07 * max(len(name) for name in track_names)
    figure = new_figure(11.0, height * n_tracks + 0.1 * (n_tracks - 1) + 1.65, margins=(left, 0.2, 0.5, 1.15),
                        rows=n_tracks, columns=n_examples, gap=0.1, column_gap=0.3)
    _say_how_ranked(figure, columns)
    drawn = {"rows": [row for _, row in examples], "observed": [], "predicted": []}
    positions = np.arange(observed.shape[-1])
    for k, (label, row) in enumerate(examples):
        for s, name in enumerate(track_names):
            ax = figure.add_subplot(n_tracks, n_examples, s * n_examples + k + 1)
            ax.plot(positions, observed[k, s], color="tab:blue", alpha=0.8, linewidth=0.8, zorder=3,
                    drawstyle="steps-mid", label="observed")
            ax.plot(positions, predicted[k, s], color="black", linewidth=0.9, zorder=2, label="predicted")
            drawn["observed"].append(observed[k, s])
            drawn["predicted"].append(predicted[k, s])
            ax.set_xlim(0, observed.shape[-1] - 1)
            ax.set_ylim(bottom=0.0)
            ax.locator_params(axis="y", nbins=2)
            ax.tick_params(labelsize=7, length=2, pad=1)
            if s < n_tracks - 1:
                ax.tick_params(labelbottom=False)
            if k == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            if s == 0:
                ax.set_title(f"{label}\n{labels[k]}\nMNLL {columns['profile_mnll'][row]:.4g}, observed "
                             f"{columns['observed_counts'][row]:.0f}, predicted {predicted[k].sum():.0f}", fontsize=8.5,
                             y=TITLE_Y)
    if examples:  # the key above the panels, right, under the ranking's line
        figure.legend(handles=figure.axes[0].lines, loc="upper right", ncol=2, fontsize=8, frameon=False,
                      bbox_to_anchor=(1 - 0.2 / figure.get_figwidth(), 1 - 0.3 / figure.get_figheight()))
        for ax in figure.axes[n_tracks - 1::n_tracks]:
            ax.set_xlabel("position in window", fontsize=8)
    return figure, drawn


def figures_or_none(draw) -> dict:
    """``draw()``'s figures, or none where matplotlib is installed but cannot be imported (as if it were not)."""
    try:
        return draw()
    except ImportError:
        return {}


def figure_jobs(columns: dict, summary: dict, examples: Optional[dict] = None, names=FIGURE_FILES) -> dict:
    """``{file name: callable returning the PNG bytes}`` of the report figures ``names``; the example panel only
    when ``examples`` (``ScoreResult.examples``: picks, labels, observed and predicted profiles) is given."""
    jobs = {COUNTS_SCATTER: lambda: png_bytes(counts_scatter(columns, summary)[0]),
            PROFILE_HISTOGRAMS: lambda: png_bytes(profile_histograms(columns, summary)[0])}
    if examples:
        jobs[PROFILE_EXAMPLES] = lambda: png_bytes(profile_examples(
            examples["picks"], examples["observed"], examples["predicted"], columns, examples["labels"],
            summary["settings"]["track_names"])[0])
    return {name: jobs[name] for name in FIGURE_FILES if name in names and name in jobs}


def draw_figures(columns: dict, summary: dict, examples: Optional[dict] = None, names=FIGURE_FILES) -> dict:
    """The report figures ``names`` as ``{file name: PNG bytes}`` (``figure_jobs``), drawn one after another."""
    return {name: draw() for name, draw in figure_jobs(columns, summary, examples, names).items()}


def warm_up() -> None:
    """Import matplotlib and draw a small figure with text (loads the fonts), so that the first real
    figure starts at once."""
    figure = new_figure(2.0, 2.0)
    figure.add_subplot().set_title("warm-up")
    png_bytes(figure)
