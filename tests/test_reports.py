"""Report outputs people look at: figures, report.html (in a real headless browser), score --json and the
MultiQC custom-content file. Every number is checked against values recomputed here from regions.tsv
or from the arrays the case was written from."""

import csv
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from scipy.special import softmax

from bpnet_eval.examples import example_rows
from bpnet_eval.options import Job
from bpnet_eval.report import figures as plots
from bpnet_eval.seed import predicted_profile
from bpnet_eval.inputs import read_rows
from tests.support.cases import make_case
from tests.support.cli import run_cli

pytest.importorskip("matplotlib")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FIGURES = ("counts_scatter.png", "profile_histograms.png", "profile_examples.png")
case_zero_rows = [1, 7]  # make_case's all-zero regions


def read_tsv(path):
    """Columns of a TSV with a header: numbers as float64 arrays, text as str arrays."""
    with open(path) as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    out = {}
    for k, name in enumerate(rows[0]):
        values = [row[k] for row in rows[1:]]
        try:
            out[name] = np.array(values, dtype=np.float64)
        except ValueError:
            out[name] = np.array(values, dtype=str)
    return out


def metric_columns(table):
    return {k: v for k, v in table.items() if k not in ("chrom", "start", "end", "peak")}


@pytest.fixture(scope="module")
def scored(tmp_path_factory, forked):
    """One case scored by the installed CLI with --json (plots on by default)."""
    tmp = tmp_path_factory.mktemp("scored")
    case = make_case(tmp, n=40, length=60, seed=3)
    report = tmp / "report"
    done = forked("score", case.predictions, *case.bigwigs, "--out", report, "--json", "--metrics", "all")
    assert done.returncode == 0, done.stderr
    return case, report, done


@pytest.mark.slow
def test_json_stdout_is_exactly_summary_json(scored):
    _, report, done = scored
    text = (report / "summary.json").read_text()
    assert done.stdout == text
    assert json.loads(done.stdout) == json.loads(text)
    assert "report written to" in done.stderr  # messages go to stderr, the table is not printed


@pytest.mark.slow
def test_figures_exist_with_sane_sizes(scored):
    from PIL import Image

    _, report, _ = scored
    for name in FIGURES:
        path = report / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert 15_000 < path.stat().st_size < 2_000_000, (name, path.stat().st_size)
        with Image.open(path) as image:
            width, height = image.size
        assert 500 <= width <= 2000 and 400 <= height <= 2000, (name, image.size)
    assert not list(report.glob(".*.tmp"))


@pytest.mark.slow
def test_titles_at_their_given_height_draw_the_pixels_of_matplotlibs_own_placement(scored, monkeypatch):
    """``figures.TITLE_Y`` (titles placed without measuring the tick labels) gives every figure the pixels matplotlib's
    automatic title placement (``y=None``) gives."""
    import io

    from PIL import Image

    case, report, _ = scored
    table = read_tsv(report / "regions.tsv")
    summary = json.loads((report / "summary.json").read_text())
    picks = [("best", 0), ("worst", 1)]
    observed = case.observed[:2]
    predicted = predicted_profile(case.logits[:2], case.logcounts[:2])
    examples = {"picks": picks, "observed": observed, "predicted": predicted, "labels": ["a", "b"]}

    def pixels():
        return {name: np.asarray(Image.open(io.BytesIO(png))) for name, png in
                plots.draw_figures(metric_columns(table), summary, examples).items()}

    given = pixels()
    monkeypatch.setattr(plots, "TITLE_Y", None)
    automatic = pixels()
    assert given.keys() == automatic.keys() == set(FIGURES)
    for name in FIGURES:
        np.testing.assert_array_equal(given[name], automatic[name], err_msg=name)


@pytest.mark.slow
def test_counts_scatter_draws_the_report_numbers(scored):
    _, report, _ = scored
    table = read_tsv(report / "regions.tsv")
    summary = json.loads((report / "summary.json").read_text())
    figure, drawn = plots.counts_scatter(metric_columns(table), summary)
    expected_x = np.log(1.0 + table["observed_counts"])
    np.testing.assert_allclose(drawn["observed"], expected_x, rtol=1e-10)
    np.testing.assert_allclose(drawn["predicted"], table["predicted_logcounts"], rtol=1e-10)
    ax = figure.axes[0]
    hexagons = ax.collections[0]
    assert hexagons.get_array().sum() == len(expected_x)  # every region lies in one drawn hexagon
    r = stats.pearsonr(table["predicted_logcounts"], expected_x)[0]
    rho = stats.spearmanr(table["predicted_logcounts"], expected_x)[0]
    assert f"Pearson r = {r:.3f}" in ax.get_title() and f"Spearman ρ = {rho:.3f}" in ax.get_title()
    figure.canvas.draw()
    labels = [label.get_text() for label in figure.axes[1].get_yticklabels() if label.get_text()]
    top = hexagons.get_array().max()
    assert labels[0] == "1" and len(labels) >= 2 and float(labels[-1]) <= top  # the colour bar can be read


def test_count_ticks_label_a_log_colour_bar():
    assert plots.count_ticks(1) == [1]
    assert plots.count_ticks(2.9) == [1, 2]
    assert plots.count_ticks(4) == [1, 2, 4]
    assert plots.count_ticks(7) == [1, 2, 5]
    assert plots.count_ticks(9.0) == [1, 2, 5, 9]
    assert plots.count_ticks(16) == [1, 2, 5, 10, 16]
    assert plots.count_ticks(60) == [1, 2, 5, 10, 20, 50]
    assert plots.count_ticks(1000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert plots.count_ticks(3500) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 3500]


@pytest.mark.slow
def test_histograms_draw_the_report_numbers(scored):
    _, report, _ = scored
    table = read_tsv(report / "regions.tsv")
    summary = json.loads((report / "summary.json").read_text())
    columns = metric_columns(table)
    figure, drawn = plots.profile_histograms(columns, summary)
    with_reads = table["profile_mnll"][table["profile_mnll"] != 0]
    np.testing.assert_array_equal(drawn["profile_mnll"], with_reads)  # the all-zero regions are counted apart
    ax = figure.axes[0]
    heights = np.array([patch.get_height() for patch in ax.patches])
    edges = np.array([patch.get_x() for patch in ax.patches] + [ax.patches[-1].get_x() + ax.patches[-1].get_width()])
    # the outer edges are the data's range (matplotlib's bar geometry rounds them by ~1e-15)
    edges[0], edges[-1] = min(edges[0], with_reads.min()), max(edges[-1], with_reads.max())
    np.testing.assert_array_equal(heights, np.histogram(with_reads, bins=edges)[0])
    assert heights.sum() == len(table["profile_mnll"]) - len(case_zero_rows)
    assert any(f"{len(case_zero_rows)} region(s) with MNLL 0" in text.get_text() for text in ax.texts)
    assert f"median {np.median(table['profile_mnll']):.3f}" in ax.get_title()
    # the JSD panel: the report's JSD distances (zero-count regions undefined) and both shuffled baselines
    jsd = table["profile_jsd_distance"]
    assert np.isnan(jsd[case_zero_rows]).all()
    edges = np.linspace(0, np.sqrt(np.log(2)), 51)
    ax = figure.axes[1]
    bars = [p for p in ax.patches if type(p).__name__ == "Rectangle"]
    np.testing.assert_array_equal([p.get_height() for p in bars], np.histogram(jsd[np.isfinite(jsd)], bins=edges)[0])
    for baseline in ("profile_jsd_shuffled", "profile_jsd_observed_shuffled"):
        values = table[baseline]
        np.testing.assert_array_equal(drawn[baseline], values[np.isfinite(values)])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "prediction vs observed", "prediction vs shuffled observed", "observed vs shuffled observed"]
    assert f"median {np.nanmedian(jsd):.3f}" in ax.get_title() and f"{len(case_zero_rows)} undefined" in ax.get_title()
    # without the JSD columns: the MNLL histogram alone
    figure, drawn = plots.profile_histograms({k: v for k, v in columns.items() if "jsd" not in k}, summary)
    assert len(figure.axes) == 1 and list(drawn) == ["profile_mnll"]


@pytest.mark.slow
def test_jsd_histogram_overlays_only_the_baselines_present(scored):
    _, report, _ = scored
    table = read_tsv(report / "regions.tsv")
    summary = json.loads((report / "summary.json").read_text())
    rng = np.random.default_rng(0)
    n = len(table["profile_mnll"])
    columns = {k: v for k, v in metric_columns(table).items() if "jsd" not in k}
    columns.update(profile_jsd_distance=rng.uniform(0.1, 0.4, n), profile_jsd_shuffled=rng.uniform(0.5, 0.8, n))
    columns["profile_jsd_distance"][1] = np.nan  # an all-zero region: undefined, left out and counted
    figure, drawn = plots.profile_histograms(columns, summary)
    assert len(figure.axes) == 2
    ax = figure.axes[1]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["prediction vs observed",
                                                                  "prediction vs shuffled observed"]
    np.testing.assert_array_equal(drawn["profile_jsd_shuffled"], columns["profile_jsd_shuffled"])
    bars = [p for p in ax.patches if type(p).__name__ == "Rectangle"]  # the filled model histogram
    heights = np.array([p.get_height() for p in bars])
    np.testing.assert_array_equal(heights, np.histogram(columns["profile_jsd_distance"][np.arange(n) != 1],
                                                        bins=np.linspace(0, np.sqrt(np.log(2)), 51))[0])
    assert heights.sum() == n - 1
    assert "1 undefined" in ax.get_title()


@pytest.mark.slow
def test_profile_examples_draw_the_best_median_worst_regions(scored):
    case, report, _ = scored
    table = read_tsv(report / "regions.tsv")
    summary = json.loads((report / "summary.json").read_text())
    columns = metric_columns(table)
    totals = table["observed_counts"]
    with_counts = np.flatnonzero((totals > 0) & (totals >= np.median(totals[totals > 0])))
    order = with_counts[np.argsort(table["profile_mnll"][with_counts], kind="stable")]
    expected_rows = [order[0], order[(len(order) - 1) // 2], order[-1]]
    examples = example_rows(columns)
    assert [row for _, row in examples] == expected_rows
    logits, logcounts, observed = read_rows(Job.of(str(case.predictions), [str(p) for p in case.bigwigs]), expected_rows)
    np.testing.assert_array_equal(observed, case.observed[expected_rows])
    figure, drawn = plots.profile_examples(examples, observed, predicted_profile(logits, logcounts), columns,
                                           ["a", "b", "c"], summary["settings"]["track_names"])
    # joint softmax over both strands, scaled by exp(predicted log counts), minus strand drawn below zero
    for k, row in enumerate(expected_rows):
        joint = softmax(case.logits[row].astype(np.float64).ravel()).reshape(case.logits[row].shape)
        expected = joint * np.exp(float(case.logcounts[row, 0]))
        lines = figure.axes[k].lines
        np.testing.assert_allclose(lines[0].get_ydata(), case.observed[row, 0])
        np.testing.assert_allclose(lines[1].get_ydata(), expected[0], rtol=1e-9)
        np.testing.assert_allclose(lines[2].get_ydata(), -case.observed[row, 1])
        np.testing.assert_allclose(lines[3].get_ydata(), -expected[1], rtol=1e-9)
        assert f"MNLL {table['profile_mnll'][row]:.4g}" in figure.axes[k].get_title()


def test_predicted_profile_per_track_log_counts():
    rng = np.random.default_rng(1)
    logits, logcounts = rng.normal(size=(3, 2, 7)), rng.normal(2.0, 0.5, size=(3, 2))
    expected = softmax(logits, axis=-1) * np.exp(logcounts)[:, :, None]
    np.testing.assert_allclose(predicted_profile(logits, logcounts), expected, rtol=1e-12)


@pytest.mark.slow
def test_multiqc_custom_content(scored):
    _, report, _ = scored
    content = json.loads((report / "bpnet_eval_mqc.json").read_text())
    table = read_tsv(report / "regions.tsv")
    assert content["plot_type"] == "table" and content["id"] == "bpnet_eval" and content["section_name"]
    assert list(content["data"]) == ["preds"]  # the predictions file's stem
    row = content["data"]["preds"]
    assert set(row) <= set(content["headers"])
    assert row["n_regions"] == len(table["chrom"])
    assert row["profile_mnll_median"] == pytest.approx(np.median(table["profile_mnll"]), rel=1e-9)
    y = np.log1p(table["observed_counts"])
    assert row["count_pearson"] == pytest.approx(stats.pearsonr(table["predicted_logcounts"], y)[0], rel=1e-9)
    assert row["count_mse"] == pytest.approx(np.mean((y - table["predicted_logcounts"]) ** 2), rel=1e-9)
    assert content["headers"]["profile_mnll_median"]["scale"] == "RdYlGn-rev"  # lower is better
    assert content["headers"]["count_pearson"]["scale"] == "RdYlGn"
    assert "profile_mnll_plus_median" not in row  # per-track columns stay out of the table


@pytest.mark.slow
def test_no_plots_still_writes_html_and_removes_stale_figures(scored, tmp_path, forked):
    case, report, _ = scored
    out = tmp_path / "again"
    shutil.copytree(report, out)
    done = forked("score", case.predictions, *case.bigwigs, "--out", out, "--no-plots", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert not [name for name in FIGURES if (out / name).exists()]
    page = (out / "report.html").read_text()
    assert "Figures were not drawn" in page and "data:image/png" not in page
    assert (out / "bpnet_eval_mqc.json").exists()


@pytest.mark.slow
def test_without_matplotlib(scored, tmp_path):
    """A matplotlib that cannot be imported: default = no figures; --plots = one-line usage error."""
    case, _, _ = scored
    fake = tmp_path / "site"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {"PYTHONPATH": str(fake), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = run_cli("score", case.predictions, *case.bigwigs, "--out", tmp_path / "r", "-q", env=env)
    assert done.returncode == 0, done.stderr
    assert not list((tmp_path / "r").glob("*.png")) and (tmp_path / "r" / "report.html").exists()
    done = run_cli("score", case.predictions, *case.bigwigs, "--out", tmp_path / "r2", "--plots", env=env)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "bpnet-eval[plots]" in done.stderr


@pytest.mark.slow
def test_unwritable_home_uses_a_temporary_matplotlib_dir(scored, tmp_path, forked):
    case, _, _ = scored
    env = {"HOME": "/nonexistent/home"}  # the forked run has not imported matplotlib yet
    done = forked("score", case.predictions, *case.bigwigs, "--out", tmp_path / "r", "-q", env=env)
    assert done.returncode == 0, done.stderr
    assert "Matplotlib" not in done.stderr and (tmp_path / "r" / "counts_scatter.png").exists()


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="no headless browser: install Debian's chromium "
                    "(apt-get install -y chromium) to check report.html in a real browser")
def test_report_html_renders_in_headless_chromium(scored, tmp_path):
    _, report, _ = scored
    table = read_tsv(report / "regions.tsv")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = (report / "report.html").resolve().as_uri()
    screenshot = tmp_path / "report_screenshot.png"
    shot = subprocess.run([CHROMIUM, *flags, f"--screenshot={screenshot}", "--window-size=1200,2000", url],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 50_000
    print(f"\nreport.html screenshot: {screenshot}", file=sys.stderr)
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert '<table id="summary">' in html and '<table id="settings">' in html
    for column in ("profile_mnll", "count_log1p_mse", "mixture_loss"):
        assert f"<td>{column}</td><td>{np.mean(table[column]):.6g}</td>" in html, column
    r = stats.pearsonr(table["predicted_logcounts"], np.log1p(table["observed_counts"]))[0]
    assert f"<td>counts pearson</td><td>{r:.6g}</td>" in html
    assert html.count('src="data:image/png;base64,') == 3
    assert "<td>count_loss_weight</td><td>1.0</td>" in html


def test_examples_draw_and_list_only_the_tracks_with_signal():
    """A CAGE-like region with reads and prediction on the plus strand only: no minus lines, no minus legend."""
    observed = np.zeros((1, 2, 50))
    observed[0, 0, 10:13] = [3, 9, 2]
    predicted = np.full((1, 2, 50), 1e-6)
    predicted[0, 0, 8:15] = 2.0
    columns = {"profile_mnll": np.array([12.5]), "observed_counts": np.array([14.0])}
    figure, drawn = plots.profile_examples([("best", 0)], observed, predicted, columns, ["chr1:0-50"],
                                           ["plus", "minus"])
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["observed plus", "predicted plus"]
    assert len(ax.lines) == 3  # the two plus lines and the zero line between the strands
    observed_line, predicted_line = ax.lines[:2]
    assert observed_line.get_zorder() > predicted_line.get_zorder()  # the observed trace is drawn on top
    np.testing.assert_array_equal(drawn["observed"][0], observed[0, 0])
    assert [t.get_text() for t in figure.texts] == [  # which regions "best" is the best of
        "ranked by profile MNLL among the 1 regions with at least 14 observed reads (the median of the regions with "
        "reads; MNLL grows with the reads)"]


def test_examples_of_more_than_two_tracks_are_a_grid_of_one_panel_per_track_and_region():
    """BPNet's 4 tasks x 2 strands: one column per example region, one row per track, each panel that track's
    observed counts and predicted profile (every track, even a flat one), the track named left of its row, the
    region above its column, one key for the figure."""
    rng = np.random.default_rng(5)
    names = [f"task{t}.{strand}" for t in range(4) for strand in ("plus", "minus")]
    observed = rng.poisson(0.4, size=(2, 8, 60)).astype(np.float64)
    observed[1, 5] = 0.0  # nothing on one track of one region: still drawn, flat
    predicted = rng.gamma(2.0, 0.3, size=(2, 8, 60))
    columns = {"profile_mnll": np.array([40.25, 97.5]), "observed_counts": observed.sum(axis=(1, 2))}
    examples = [("best", 0), ("worst", 1)]
    figure, drawn = plots.profile_examples(examples, observed, predicted, columns, ["chr1:0-60", "chr2:5-65"], names)
    assert len(figure.axes) == 16
    for k in range(2):
        for s in range(8):
            ax = figure.axes[k * 8 + s]  # drawn region by region, track by track
            assert ax.get_subplotspec().rowspan.start == s and ax.get_subplotspec().colspan.start == k
            observed_line, predicted_line = ax.lines
            np.testing.assert_array_equal(observed_line.get_ydata(), observed[k, s])
            np.testing.assert_array_equal(predicted_line.get_ydata(), predicted[k, s])
            assert ax.get_ylabel() == (names[s] if k == 0 else "")
            assert ax.get_legend() is None
        title = figure.axes[k * 8].get_title()
        assert ["chr1:0-60", "chr2:5-65"][k] in title and f"MNLL {columns['profile_mnll'][k]:.4g}" in title
        assert f"predicted {predicted[k].sum():.0f}" in title
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["observed", "predicted"]
    assert len(drawn["observed"]) == 16 and np.array_equal(drawn["predicted"][15], predicted[1, 7])
    assert plots.png_bytes(figure).startswith(b"\x89PNG")


def test_mnll_histogram_counts_regions_without_reads_apart():
    rng = np.random.default_rng(1)
    mnll = np.concatenate([np.zeros(49), rng.lognormal(5, 1.2, 200), [np.nan]])
    columns = {"profile_mnll": mnll, "observed_counts": np.zeros(len(mnll))}
    summary = {"metrics": {"profile_mnll": {"median": float(np.nanmedian(mnll))}}}
    figure, drawn = plots.profile_histograms(columns, summary)
    ax = figure.axes[0]
    np.testing.assert_array_equal(drawn["profile_mnll"], mnll[49:249])  # the 49 zeros and the NaN are not drawn
    assert sum(patch.get_height() for patch in ax.patches) == 200 and ax.get_xscale() == "log"
    assert any("49 region(s) with MNLL 0" in text.get_text() for text in ax.texts)
    assert "200 regions drawn, 1 undefined" in ax.get_title()


@pytest.mark.slow
def test_report_html_lists_the_best_and_worst_regions_as_browser_coordinates(scored):
    _, report, _ = scored
    table = read_tsv(report / "regions.tsv")
    mnll, totals = table["profile_mnll"], table["observed_counts"]
    reads = np.isfinite(mnll) & (totals > 0)
    candidates = np.flatnonzero(reads & (totals >= np.median(totals[reads])))
    ranked = candidates[np.argsort(mnll[candidates], kind="stable")]
    page = (report / "report.html").read_text()
    for kind, rows in (("best", ranked[:10]), ("worst", ranked[::-1][:10])):
        body = page.split(f'<table id="{kind}-regions">')[1].split("</table>")[0]
        shown = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1])]
        assert [int(cells[0]) for cells in shown] == [int(r) + 1 for r in rows], kind
        for cells, row in zip(shown, rows):
            assert cells[1] == f"{table['chrom'][row]}:{int(table['start'][row]) + 1}-{int(table['end'][row])}"
            assert float(cells[2]) == pytest.approx(mnll[row], rel=1e-5)
