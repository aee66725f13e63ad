"""Generate the large realistic scoring cases used by ``bench/run_bench.py``, one data shape each.

    python bench/make_case.py OUT_DIR [--shape chip] [--regions 100000] [--length 1000] [--seed 0]

Shapes (``--shape``; ``SHAPES`` below):

* ``chip`` (default): ChIP-like sparse integer 5'-end counts, a thin Poisson background plus read
  piles around peak summits (plus strand upstream of minus); half peaks, half background windows;
* ``peaks``: the same read piles with no background at all, and every region a peak (sparse
  peaks only: most bases of a window are 0);
* ``background``: a low count (1 + Poisson(0.5)) on every base of every chromosome plus the
  peaks, stored as fixed-step sections (every base covered, no zero run left out): dense windows, on a
  genome of a fifth of the size (windows overlap) so that the files stay tens of MB;
* ``cage``: CAGE-like spikes: transcription start sites on one strand each, a handful of
  positions holding tall, heavy-tailed counts (up to thousands), nothing elsewhere;
* ``s1``: one unstranded track (ATAC/DNase-like, S = 1: ``observed.bw``, logits (N, 1, L));
* ``input2114``: chrombpnet-style evaluation windows: the regions are a narrowPeak file of the
  model's 2114-bp input windows around each summit (``peaks.narrowPeak``, column 10 the summit
  offset 1057), the predictions its central 1000-bp output (``--length``); every region a peak;
* ``normalised``: the ``chip`` signal as a normalised track (counts per million of 27M reads: each
  count times 0.037), so that no value is an integer (MNLL's ``lgamma(k + 1)`` computed, not looked up);
* ``chrombpnet``: the ``s1`` signal with the predictions as chrombpnet's ``predict`` writes them: float64
  probabilities ``predictions/profs`` (N, L), log counts and coordinates (``coords_center``), every dataset
  gzip-compressed in h5py's automatic chunks (~1,600 regions x 16 positions);
* ``genome``: the ``chip`` signal on a human-sized genome (hg38's chromosomes 1-22 and X, 3.1 Gb at 100,000
  regions): genome-wide bigWigs of ~34M intervals (~520 MB) each, as a deep ChIP/ATAC track is, too big for the
  reader to keep whole; the signal is held sparse while generating (``SparseTrack``);
* ``ucsc``: the ``chip`` signal in the bigWig layout of UCSC's ``bedGraphToBigWig`` (1,024 intervals per
  data block; ``bench/ucsc_bigwig.py``), which chrombpnet's and BPNet's pipelines use for observed tracks:
  pyBigWig's per-window ``values`` reads it about twice as fast as pyBigWig's own files (~2,730 per block);
* ``fixedstep``: the ``chip`` signal written fixedStep span 1 on every base, zeros included (one pyBigWig call
  per numpy array); ``deep``: 1 + Poisson(0.5) on every base of the full-size genome plus the peaks (fixed-step);
  ``densefloat``: that deep signal times 0.037 (a normalised track: float32 on every base, too big to keep even
  where the windows lie, so read block by block); ``regionchunks``: the ``chip`` case with its predictions
  gzip-compressed in chunks of one region each; ``scaffolds``: the ``chip`` signal on a draft assembly of 20,000
  small contigs (a data block or more each, most holding a few hundred intervals); ``npz``: the ``chip`` case (same
  seed: the same signal and predictions) with its predictions as bpnet-lite 0.9's ``predict`` writes them;
  ``predbw``: the ``chip`` signal on a genome twice its size with counts-scale predicted bigWigs, a block a window;
  ``multitask``: BPNet's multi-task layout, four ChIP-like tasks (the first at every summit, the others each at a
  random half of them) times two strands: 8 bigWigs (``observed.task<t>.<plus|minus>.bw``), about as large as the
  ``chip`` case's each, and logits ``(N, 8, L)`` over a quarter of ``--regions`` (25,000 windows: as many values as
  the two-track shapes);
* ``basepairmodels`` and ``bpreveal``: the ``chip`` case (same seed: the same signal, windows and predictions) with
  its predictions as those tools' ``predict`` write them: basepairmodels' counts-scale ``predictions/pred_profs``
  ``(N, L, S)`` (``softmax(z_s) * (e^c_s - 1)``, ``c_s`` the region's log count plus the log of the track's share)
  and ``predictions/pred_logcounts`` ``(N, S)``, float64 gzip-compressed in h5py's automatic chunks (the observed
  profiles it also stores are left out: nothing reads them); BPReveal's ``head_0/logits`` ``(N, L, S)`` and
  ``head_0/logcounts`` ``(N,)`` float32 in chunks of 100 regions, ``coords_chrom`` an index into ``chrom_names``;
* ``long``: the ``chip`` signal over 10,000-bp windows (L = 10,000 whatever ``--length``), a tenth of ``--regions``
  (10,000 windows: as many values as the two-track shapes), where the naive pipeline's cost is per value rather than
  per window.

Writes into OUT_DIR:

* ``observed.plus.bw``, ``observed.minus.bw`` (``observed.bw`` for ``s1``): integer counts (scaled for
  ``normalised``) on a few chromosomes of tens of Mb, stored as merged bedGraph runs (fixed-step for ``background``);
* ``predictions.h5``: the native layout (``chrombpnet``: chrombpnet's, above; ``predictions/logits`` (N, S, L) float32,
  ``predictions/logcounts`` (N, 1), ``coords/coords_{chrom,start,end,peak}``), chunked along
  regions with whole trailing axes (about 2 MB per chunk), uncompressed. Logits are the log of
  a smoothed copy of the observed signal plus noise, so predictions correlate with the truth;
* ``peaks.narrowPeak`` (``input2114`` only): the regions to score with ``--regions``;
* ``npz`` instead of ``predictions.h5``: ``predictions.profile.npz`` and ``predictions.counts.npz`` (compressed,
  ``arr_0``) and ``regions.bed``, the windows to score with ``--regions``; ``predbw``: ``predicted.plus.bw``,
  ``predicted.minus.bw`` and ``regions.bed``;
* ``case.json``: what was generated (shape, files, the ``--regions`` file if any).

Peak regions (summit ± L/2) come in the order of a score-sorted peak file, i.e. not by position;
background windows in position order, as in chrombpnet's peaks-then-nonpeaks evaluation sets.
Memory: about 16 bytes per chromosome base while generating (about 2 GB at the default sizes);
the predictions are written in chunks.
"""

from __future__ import annotations

import argparse
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pyBigWig
from ucsc_bigwig import write_ucsc_bigwig

CHROM_SIZES_MB = (34, 30, 26, 22)  # a few chromosomes of tens of Mb
HG38_SIZES = dict(zip([f"chr{i}" for i in range(1, 23)] + ["chrX"], [  # the ``genome`` shape's chromosomes
    248956422, 242193529, 198295559, 190214555, 181538259, 170805979, 159345973, 145138636, 138394717, 133797422,
    135086622, 133275309, 114364328, 107043718, 101991189, 90338345, 83257441, 80373285, 58617616, 64444167,
    46709983, 50818468, 156040895]))
BACKGROUND_RATE = 0.01  # reads per base per strand away from peaks
STRAND_SHIFT = 20  # plus-strand reads pile up this far upstream of the summit, minus downstream
CHUNK_BYTES = 2 << 20
INPUT_WIDTH = 2114  # the input2114 shape: chrombpnet's input window around each summit
CONTIG_SEED = 7  # the scaffolds shape's contig sizes (the same whatever the case's seed)


@dataclass(frozen=True)
class Shape:
    """How one bench case looks: its signal, tracks, regions and files."""

    description: str
    background_rate: float = BACKGROUND_RATE  # sparse background reads per base per strand
    dense_background: bool = False  # 1 + Poisson(0.5) on every base, fixed-step sections
    every_base: bool = False  # the bigWigs written fixedStep span 1 on every base, zeros included
    spikes: bool = False  # CAGE-like: a few tall positions per site, one strand per site
    n_tracks: int = 2
    peak_fraction: float = 0.5  # the rest are background windows
    input_width: int = 0  # > 0: regions as a narrowPeak file of windows this wide (summit in the middle)
    genome_scale: float = 1.0  # of the chromosome sizes (a dense track on a smaller genome stays writable)
    scale: float = 1.0  # the bigWigs hold the counts times this (a normalised track where it is not 1)
    ucsc_layout: bool = False  # bigWigs laid out as UCSC's bedGraphToBigWig writes them (``ucsc_bigwig``)
    predictions_layout: str = "native"  # or "chrombpnet": its predict's HDF5 (``write_chrombpnet_predictions``); or
    # "basepairmodels", "bpreveal": their predict's HDF5 (``write_basepairmodels_predictions``,
    # ``write_bpreveal_predictions``); or "npz": bpnet-lite 0.9's two compressed .npz files and a BED file of the
    # windows (``write_npz_predictions``); "bigwig": counts-scale bigWigs over tiled windows and their BED file
    # (``write_bigwig_predictions``)
    region_chunks: bool = False  # native predictions gzip-compressed in chunks of one region each
    human_genome: bool = False  # hg38's chromosomes (3.1 Gb), the signal kept sparse (``SparseTrack``)
    contigs: int = 0  # > 0: a draft assembly of this many contigs (``chromosome_sizes``) instead of a few chromosomes
    regions_scale: float = 1.0  # windows scored: this share of ``--regions`` (the genome and its peaks as for all)
    length: int = 0  # > 0: the windows' length (L) whatever ``--length``


SHAPES = {
    "chip": Shape("ChIP-like: sparse background + read piles at peaks; half peaks, half background windows"),
    "peaks": Shape("sparse peaks only: read piles, no background, every region a peak",
                   background_rate=0.0, peak_fraction=1.0),
    "background": Shape("low background on every base of every chromosome (1 + Poisson(0.5)) + peaks",
                        dense_background=True, genome_scale=0.2),
    "cage": Shape("CAGE-like spikes: a few tall positions per TSS, one strand per TSS", background_rate=0.0,
                  spikes=True),
    "s1": Shape("one unstranded track (S = 1), ChIP/ATAC-like", n_tracks=1),
    "input2114": Shape("narrowPeak regions of 2114-bp input windows, 1000-bp output predictions; all peaks",
                       peak_fraction=1.0, input_width=INPUT_WIDTH),
    "normalised": Shape("the chip signal as a normalised track (CPM: counts x 0.037), no value an integer",
                        scale=0.037),
    "ucsc": Shape("the chip signal in UCSC's bigWig layout (bedGraphToBigWig: 1,024 intervals per data block, as "
                  "chrombpnet's and BPNet's pipelines write observed tracks; pyBigWig writes ~2,730)", ucsc_layout=True),
    "chrombpnet": Shape("chrombpnet's predict output for one unstranded ATAC-like track (S = 1): float64 probabilities "
                        "(N, L) and every dataset gzip-compressed in h5py's automatic chunks",
                        n_tracks=1, predictions_layout="chrombpnet"),
    "genome": Shape("the chip signal on a human-sized genome (hg38's chromosomes 1-22 and X, 3.1 Gb): genome-wide "
                    "bigWigs of ~34M intervals (~520 MB) each, too big to keep whole", human_genome=True),
    "fixedstep": Shape("the chip signal written as one pyBigWig call writes a numpy array: fixedStep span 1 on every "
                       "base of every chromosome, zeros included (112M values a strand)", every_base=True),
    "deep": Shape("deep per-base counts on the full-size genome: 1 + Poisson(0.5) on every base (112 Mb a strand, "
                  "fixedStep span 1) + peaks", dense_background=True),
    "densefloat": Shape("the deep shape's per-base signal as a normalised track (counts x 0.037 on every base of the "
                        "full-size genome, no value an integer: float32, 448 MB a strand as one value a base): too "
                        "big to keep even where the windows lie, so read block by block", dense_background=True,
                        scale=0.037),
    "scaffolds": Shape("the chip signal on a draft assembly of 20,000 contigs (log-normal sizes, median 4 kb, ~110 Mb "
                       "in all): a bigWig data block or more per contig, most of a few hundred intervals; windows on "
                       "thousands of contigs", contigs=20_000),
    "regionchunks": Shape("the chip case with its predictions written region by region: gzip-compressed chunks of one "
                          "region each, (1, 2, 1000)", region_chunks=True),
    "npz": Shape("the chip case with its predictions as bpnet-lite 0.9's predict writes them: two compressed .npz "
                 "files (profile logits, log counts) and the windows in a BED file", predictions_layout="npz"),
    "multitask": Shape("BPNet's multi-task layout: four ChIP-like tasks (the first at every summit, the others each "
                       "at a random half) x two strands, 8 bigWigs about as large as the chip case's and logits "
                       "(N, 8, L), over a quarter of the windows (as many values as the two-track shapes)", n_tracks=8,
                       regions_scale=0.25),
    "predbw": Shape("the chip signal with its predictions as counts-scale bigWigs, one a strand, each window written "
                    "by one pyBigWig addEntries (one fixed-step block a window, as chrombpnet's pred_bw is): windows "
                    "spread evenly over the tiles of a genome twice the chip case's, none touching another (a bigWig "
                    "holds one value a base; pyBigWig joins touching windows into one block), in a BED file",
                    predictions_layout="bigwig", genome_scale=2.0),
    "basepairmodels": Shape("the chip case with its predictions as basepairmodels' (and kundajelab bpnet 2.0's) "
                            "predict writes them: counts-scale profiles softmax(z_s) (e^c_s - 1) (N, L, S) and "
                            "per-track log counts (N, S), float64, every dataset gzip-compressed in h5py's automatic "
                            "chunks", predictions_layout="basepairmodels"),
    "bpreveal": Shape("the chip case with its predictions as BPReveal's PredictionWriter writes them: head_0/logits "
                      "(N, L, S) and head_0/logcounts (N,) float32 in chunks of 100 regions, the chromosomes as "
                      "indices into chrom_names", predictions_layout="bpreveal"),
    "long": Shape("the chip signal over 10,000-bp windows (L = 10,000), a tenth as many windows (as many values as "
                  "the two-track shapes): the naive pipeline's cost is per value there, not per window",
                  length=10_000, regions_scale=0.1),
}


def chromosome_sizes(n_regions: int, genome_scale: float = 1.0, human: bool = False, contigs: int = 0) -> dict:
    """Chromosome sizes: tens of Mb (``human``: hg38's) at 100,000 regions, scaled down with smaller cases (at least
    5%), times ``genome_scale``; or (``contigs``) that many contigs at 100,000 regions, fewer with smaller cases (the
    same share, at least 50), of log-normal sizes (median 4 kb, sigma 0.8, at least 2.6 kb: a 1-kb window and its
    margins fit)."""
    scale = min(1.0, max(n_regions / 100_000, 0.05)) * genome_scale
    if human:
        return {name: int(size * scale) for name, size in HG38_SIZES.items()}
    if contigs:
        sizes = np.maximum(np.round(np.random.default_rng(CONTIG_SEED).lognormal(np.log(4000), 0.8,
                                                                                max(50, int(contigs * scale)))), 2600)
        return {f"scaffold_{k}": int(size) for k, size in enumerate(sizes)}
    return {f"chr{i + 1}": int(mb * 1_000_000 * scale) for i, mb in enumerate(CHROM_SIZES_MB)}


def simulate_strands(size: int, summits: np.ndarray, rng, background_rate: float = BACKGROUND_RATE) -> np.ndarray:
    """Integer counts ``(2, size)``: background plus reads scattered around each summit."""
    counts = np.empty((2, size), dtype=np.int32)
    reads_per_peak = np.round(rng.lognormal(5.0, 1.0, len(summits))).astype(np.int64) + 10
    for strand, shift in enumerate((-STRAND_SHIFT, STRAND_SHIFT)):
        centre = np.repeat(summits + shift, reads_per_peak // 2 + strand * (reads_per_peak % 2))
        ends = np.clip(np.round(centre + rng.normal(0.0, 40.0, len(centre))).astype(np.int64), 0, size - 1)
        background = rng.poisson(background_rate * size)
        ends = np.concatenate([ends, rng.integers(0, size, background)])
        counts[strand] = np.bincount(ends, minlength=size)
    return counts


def simulate_spikes(size: int, sites: np.ndarray, rng) -> np.ndarray:
    """CAGE-like integer counts ``(2, size)``: each site on one strand, 1-6 positions within 30 bp of it holding
    tall, heavy-tailed counts (lognormal, median ~50, up to thousands); zero elsewhere."""
    counts = np.zeros((2, size), dtype=np.int32)
    per_site = rng.integers(1, 7, len(sites))
    site = np.repeat(np.arange(len(sites)), per_site)
    position = np.clip(sites[site] + rng.integers(-30, 31, len(site)), 0, size - 1)
    strand = rng.integers(0, 2, len(sites))[site]
    height = np.minimum(np.round(rng.lognormal(4.0, 1.5, len(site))), 50_000).astype(np.int32) + 1
    np.add.at(counts, (strand, position), height)
    return counts


def simulate(shape: Shape, size: int, summits: np.ndarray, rng) -> np.ndarray:
    """Integer counts ``(S, size)`` of one chromosome in ``shape``."""
    if shape.spikes:
        counts = simulate_spikes(size, summits, rng)
    else:
        counts = simulate_strands(size, summits, rng, shape.background_rate)
    if shape.dense_background:
        counts += (1 + rng.poisson(0.5, counts.shape)).astype(np.int32)
    if shape.n_tracks == 1:
        counts = counts.sum(axis=0, keepdims=True)
    for _ in range(shape.n_tracks // 2 - 1):  # more tasks: each one's two strands at a random half of the summits
        own = summits[rng.random(len(summits)) < 0.5]
        counts = np.concatenate([counts, simulate_strands(size, own, rng, shape.background_rate)])
    return counts


def smoothed(counts: np.ndarray, half_width: int = 25) -> np.ndarray:
    """A triangular moving average of ``counts`` along the last axis (float32)."""
    out = counts.astype(np.float32)
    for _ in range(2):
        padded = np.concatenate([np.zeros(counts.shape[:-1] + (half_width + 1,), np.float64),
                                 out.astype(np.float64), np.zeros(counts.shape[:-1] + (half_width,), np.float64)],
                                axis=-1)
        cumulative = np.cumsum(padded, axis=-1)
        width = 2 * half_width + 1
        out = ((cumulative[..., width:] - cumulative[..., :-width]) / width).astype(np.float32)
    return out


class SparseTrack:
    """One chromosome's integer counts ``(S, size)`` held as the sorted positions and counts of each track's nonzero
    bases (a human-sized genome does not fit as one count per base); ``track[:, window]`` (``window``: consecutive
    positions) gives the dense ``(S, len(window))`` counts, ``track.smoothed()`` a view giving ``smoothed`` ones."""

    def __init__(self, size: int, positions: list, counts: list, smooth: bool = False):
        self.shape = (len(positions), size)
        self.positions, self.counts, self.smooth = positions, counts, smooth

    def smoothed(self) -> "SparseTrack":
        return SparseTrack(self.shape[1], self.positions, self.counts, smooth=True)

    def __getitem__(self, index):
        window = index[1]
        margin = 51 if self.smooth else 0  # ``smoothed``'s reach (two passes of a 51-bp window) ...
        lo = max(int(window[0]) - margin, 0)  # ... within the chromosome, whose ends it does not cross
        hi = min(int(window[-1]) + 1 + margin, self.shape[1])
        dense = np.zeros((self.shape[0], hi - lo), np.int32)
        for s, (positions, counts) in enumerate(zip(self.positions, self.counts)):
            a, b = np.searchsorted(positions, [lo, hi])
            dense[s, positions[a:b] - lo] = counts[a:b]
        first = int(window[0]) - lo
        return (smoothed(dense) if self.smooth else dense)[:, first:first + len(window)]


def simulate_sparse(size: int, summits: np.ndarray, rng, n_tracks: int, background_rate: float = BACKGROUND_RATE):
    """``simulate_strands``' counts as a ``SparseTrack``: background reads and read piles, from positions alone."""
    reads_per_peak = np.round(rng.lognormal(5.0, 1.0, len(summits))).astype(np.int64) + 10
    positions, counts = [], []
    for strand, shift in enumerate((-STRAND_SHIFT, STRAND_SHIFT)):
        centre = np.repeat(summits + shift, reads_per_peak // 2 + strand * (reads_per_peak % 2))
        ends = np.clip(np.round(centre + rng.normal(0.0, 40.0, len(centre))).astype(np.int64), 0, size - 1)
        ends = np.concatenate([ends, rng.integers(0, size, rng.poisson(background_rate * size))])
        where, count = np.unique(ends, return_counts=True)
        positions.append(where)
        counts.append(count.astype(np.int32))
    if n_tracks == 1:
        where, inverse = np.unique(np.concatenate(positions), return_inverse=True)
        positions, counts = [where], [np.bincount(inverse, np.concatenate(counts)).astype(np.int32)]
    return SparseTrack(size, positions, counts)


def sparse_runs(positions: np.ndarray, counts: np.ndarray):
    """``runs`` of a ``SparseTrack``'s track: runs of equal counts on consecutive bases merged."""
    new_run = np.ones(len(positions), bool)
    new_run[1:] = (positions[1:] != positions[:-1] + 1) | (counts[1:] != counts[:-1])
    first = np.flatnonzero(new_run)
    last = np.r_[first[1:], len(positions)] - 1
    return positions[first], positions[last] + 1, counts[first]


FIXED_STEP_SECTION = 1 << 20  # bases per addEntries call of a fixed-step track


def runs(values: np.ndarray):
    """``(starts, ends, values)`` of the runs of equal nonzero values of one chromosome's base counts."""
    where = np.flatnonzero(values)
    new_run = np.ones(len(where), bool)
    new_run[1:] = (where[1:] != where[:-1] + 1) | (values[where[1:]] != values[where[:-1]])
    starts = where[new_run]
    run_index = np.cumsum(new_run) - 1
    ends = np.zeros(len(starts), np.int64)
    np.maximum.at(ends, run_index, where + 1)
    return starts, ends, values[starts]


def write_strand_bigwig(path: Path, sizes: dict, counts_by_chrom: dict, strand: int, every_base: bool = False,
                        scale: float = 1.0, ucsc_layout: bool = False) -> None:
    """One strand as a bigWig of merged runs of equal nonzero values (zeros left uncovered), or with
    ``every_base`` as fixed-step sections of span 1 covering every base; each count times ``scale``. Written by
    pyBigWig, or with ``ucsc_layout`` as UCSC's bedGraphToBigWig lays it out (``ucsc_bigwig``)."""
    def chromosome_runs(chrom):
        counts = counts_by_chrom[chrom]
        if isinstance(counts, SparseTrack):
            return sparse_runs(counts.positions[strand], counts.counts[strand])
        return runs(counts[strand])

    if ucsc_layout:
        intervals = {}
        for chrom in sizes:
            starts, ends, values = chromosome_runs(chrom)
            if len(starts):
                intervals[chrom] = (starts, ends, values * scale)
        write_ucsc_bigwig(path, sizes, intervals)
        return
    with pyBigWig.open(str(path), "w") as bw:
        bw.addHeader(list(sizes.items()), maxZooms=4)
        for chrom in sizes:
            if every_base:
                values = counts_by_chrom[chrom][strand]
                for a in range(0, len(values), FIXED_STEP_SECTION):
                    bw.addEntries(chrom, a, values=(values[a:a + FIXED_STEP_SECTION] * scale).tolist(),
                                  span=1, step=1)
                continue
            starts, ends, run_values = chromosome_runs(chrom)
            if len(starts):
                bw.addEntries([chrom] * len(starts), starts.tolist(), ends=ends.tolist(),
                              values=(run_values * scale).tolist())


def choose_regions(sizes: dict, summits: dict, n_regions: int, length: int, rng, peak_fraction: float = 0.5,
                   margin: int = 0):
    """Peaks (summit ± L/2, score order), then background windows (position order); ``margin`` bases kept free
    on both sides of a peak window (a wider input window must fit in the chromosome)."""
    n_peaks = int(round(n_regions * peak_fraction))
    peak_chrom, peak_start = [], []
    for chrom, points in summits.items():
        ok = points[(points - length // 2 - margin >= 0) & (points - length // 2 + length + margin <= sizes[chrom])]
        peak_chrom += [chrom] * len(ok)
        peak_start.append(ok - length // 2)
    peak_chrom = np.array(peak_chrom, dtype=object)
    peak_start = np.concatenate(peak_start)
    pick = rng.choice(len(peak_start), size=n_peaks, replace=len(peak_start) < n_peaks)
    names = list(sizes)
    weights = np.array([sizes[c] for c in names], dtype=np.float64)
    background_chrom = np.array(names, dtype=object)[rng.choice(len(names), n_regions - n_peaks, p=weights / weights.sum())]
    background_start = np.array([rng.integers(0, sizes[c] - length) for c in background_chrom], dtype=np.int64)
    order = np.lexsort((background_start, [names.index(c) for c in background_chrom]))
    chrom = np.concatenate([peak_chrom[pick], background_chrom[order]])
    start = np.concatenate([peak_start[pick], background_start[order]]).astype(np.int64)
    peak = np.concatenate([np.ones(n_peaks, np.int8), np.zeros(n_regions - n_peaks, np.int8)])
    return chrom, start, peak


def predicted_slices(chrom, start, length: int, counts_by_chrom: dict, smooth_by_chrom: dict, rng, rows: int):
    """``(i, j, logits (j - i, S, L), logcounts (j - i,))`` float32 for consecutive slices of ``rows`` regions:
    the log of the smoothed signal plus noise, and ``ln(1 + total)`` plus noise."""
    n = len(start)
    tracks = next(iter(counts_by_chrom.values())).shape[0]
    offsets = np.arange(length)
    for i in range(0, n, rows):
        j = min(n, i + rows)
        observed = np.empty((j - i, tracks, length), np.float32)
        profile = np.empty((j - i, tracks, length), np.float32)
        for r in range(i, j):
            window = start[r] + offsets
            observed[r - i] = counts_by_chrom[chrom[r]][:, window]
            profile[r - i] = smooth_by_chrom[chrom[r]][:, window]
        noise = rng.normal(0.0, 0.3, profile.shape).astype(np.float32)
        total = observed.sum(axis=(1, 2))
        yield i, j, np.log(profile + 0.05) + noise + 3.0, (np.log1p(total) + rng.normal(0.0, 0.4, total.shape)).astype(
            np.float32)


def slice_rows(n: int, tracks: int, length: int) -> int:
    """Regions a slice of predictions holds (about ``CHUNK_BYTES`` of float32 logits): what every writer writes at a
    time, so that every layout gets the same values from the same random draws."""
    return max(1, min(n, CHUNK_BYTES // (tracks * length * 4)))


def write_bed(path: Path, chrom, start, length: int) -> None:
    """The windows ``start..start + length`` as a BED file, in order."""
    with open(path, "w") as handle:
        handle.writelines(f"{c}\t{a}\t{a + length}\n" for c, a in zip(chrom, np.asarray(start).tolist()))


def write_predictions(path: Path, chrom, start, peak, length: int, counts_by_chrom: dict,
                      smooth_by_chrom: dict, rng, layout: str = "native", region_chunks: bool = False) -> int:
    """The predictions in the native HDF5 layout or chrombpnet's, basepairmodels' or BPReveal's (``layout``), written
    slice by slice (the native logits with ``region_chunks`` gzip-compressed in chunks of one region); returns the chunk
    size along regions."""
    if layout == "chrombpnet":
        return write_chrombpnet_predictions(path, chrom, start, peak, length, counts_by_chrom, smooth_by_chrom, rng)
    if layout in ("basepairmodels", "bpreveal"):
        write = write_basepairmodels_predictions if layout == "basepairmodels" else write_bpreveal_predictions
        return write(path, chrom, start, length, counts_by_chrom, smooth_by_chrom, rng)
    n = len(start)
    tracks = next(iter(counts_by_chrom.values())).shape[0]
    slice_regions = slice_rows(n, tracks, length)
    chunk_regions = 1 if region_chunks else slice_regions
    with h5py.File(path, "w") as h5:
        logits_ds = h5.create_dataset("predictions/logits", shape=(n, tracks, length), dtype=np.float32,
                                      chunks=(chunk_regions, tracks, length),
                                      compression="gzip" if region_chunks else None)
        logcounts_ds = h5.create_dataset("predictions/logcounts", shape=(n, 1), dtype=np.float32,
                                         chunks=(min(n, 65536), 1))
        for i, j, logits, logcounts in predicted_slices(chrom, start, length, counts_by_chrom, smooth_by_chrom, rng,
                                                        slice_regions):
            logits_ds[i:j] = logits
            logcounts_ds[i:j] = logcounts[:, None]
        string = h5py.string_dtype()
        h5.create_dataset("coords/coords_chrom", data=np.asarray(chrom, dtype=object), dtype=string)
        h5.create_dataset("coords/coords_start", data=start)
        h5.create_dataset("coords/coords_end", data=start + length)
        h5.create_dataset("coords/coords_peak", data=peak)
    return chunk_regions


def write_chrombpnet_predictions(path: Path, chrom, start, peak, length: int, counts_by_chrom: dict,
                                 smooth_by_chrom: dict, rng) -> int:
    """chrombpnet ``predict``'s layout (``write_predictions_h5py``): ``predictions/profs`` the softmax of the
    logits in float64, ``(N, L)`` for one track, ``predictions/logcounts`` ``(N,)`` float64,
    ``coords/coords_chrom``, ``coords_center`` (window = centre - L//2 ..) and ``coords_peak``, every dataset
    gzip-compressed in h5py's automatic chunks; returns the chunk size along regions."""
    n = len(start)
    tracks = next(iter(counts_by_chrom.values())).shape[0]
    with h5py.File(path, "w") as h5:
        profs = h5.create_dataset("predictions/profs", shape=(n, length) if tracks == 1 else (n, tracks, length),
                                  dtype=float, chunks=True, compression="gzip")
        logcounts = np.empty(n)
        rows = profs.chunks[0] * max(1, 8192 // profs.chunks[0])  # whole rows of chunks: each chunk written once
        for i, j, logits, predicted in predicted_slices(chrom, start, length, counts_by_chrom, smooth_by_chrom, rng,
                                                        rows):
            z = logits.astype(np.float64)
            z -= z.max(axis=-1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=-1, keepdims=True)
            profs[i:j] = z[:, 0] if tracks == 1 else z
            logcounts[i:j] = predicted
        h5.create_dataset("predictions/logcounts", data=logcounts, dtype=float, compression="gzip")
        string = h5py.special_dtype(vlen=str)
        h5.create_dataset("coords/coords_chrom", data=np.asarray(chrom, dtype=object), dtype=string,
                          compression="gzip")
        h5.create_dataset("coords/coords_center", data=np.asarray(start) + length // 2, dtype=int, compression="gzip")
        h5.create_dataset("coords/coords_peak", data=np.asarray(peak), dtype=int, compression="gzip")
        return int(profs.chunks[0])


def write_basepairmodels_predictions(path: Path, chrom, start, length: int, counts_by_chrom: dict,
                                     smooth_by_chrom: dict, rng) -> int:
    """basepairmodels ``predict``'s layout: ``predictions/pred_profs`` ``(N, L, S)`` the counts-scale profile of each
    track, ``softmax(z_s) * (e^c_s - 1)`` with ``c_s = c + ln(share_s)``, the region's log count ``c`` split by each
    track's share of the softmax over every track and position (negative where ``c_s < 0``, as basepairmodels writes
    it), ``predictions/pred_logcounts`` ``(N, S)`` (``c_s``) and ``coords/coords_{chrom,start,end}``, every dataset
    float64 gzip-compressed in h5py's automatic chunks; written slice by slice (the native layout's slices, hence
    values) through a chunk cache that holds a row of chunks, so that each chunk is compressed once. Returns the
    chunk size along regions."""
    n = len(start)
    tracks = next(iter(counts_by_chrom.values())).shape[0]
    with h5py.File(path, "w", rdcc_nbytes=256 << 20, rdcc_nslots=1_000_003) as h5:
        profs = h5.create_dataset("predictions/pred_profs", (n, length, tracks), dtype=float, compression="gzip")
        counts = h5.create_dataset("predictions/pred_logcounts", (n, tracks), dtype=float, compression="gzip")
        for i, j, logits, logcounts in predicted_slices(chrom, start, length, counts_by_chrom, smooth_by_chrom, rng,
                                                        slice_rows(n, tracks, length)):
            z = logits.astype(np.float64)
            z = np.exp(z - z.max(axis=(1, 2), keepdims=True))
            track_sums = z.sum(axis=2)
            c = logcounts.astype(np.float64)[:, None] + np.log(track_sums / track_sums.sum(axis=1, keepdims=True))
            profs[i:j] = (z / track_sums[:, :, None] * np.expm1(c)[:, :, None]).transpose(0, 2, 1)
            counts[i:j] = c
        coords = h5.create_group("coords")
        coords.create_dataset("coords_chrom", data=np.asarray(chrom, dtype=object), dtype=h5py.string_dtype(),
                              compression="gzip")
        coords.create_dataset("coords_start", data=np.asarray(start), dtype=int, compression="gzip")
        coords.create_dataset("coords_end", data=np.asarray(start) + length, dtype=int, compression="gzip")
        return int(profs.chunks[0])


def write_bpreveal_predictions(path: Path, chrom, start, length: int, counts_by_chrom: dict, smooth_by_chrom: dict,
                               rng, chunk: int = 100) -> int:
    """BPReveal's ``PredictionWriter`` layout: ``head_0/logits`` ``(N, L, S)`` and ``head_0/logcounts`` ``(N,)``
    float32 in chunks of ``chunk`` regions (the native layout's values), ``chrom_names``/``chrom_sizes``, and
    ``coords_chrom`` (an index into ``chrom_names``, uint8), ``coords_start``/``coords_stop`` (uint32) at the top
    level (the chromosomes those of the tracks, ``(S, size)`` each). Returns the chunk size along regions."""
    n = len(start)
    tracks = next(iter(counts_by_chrom.values())).shape[0]
    names = list(counts_by_chrom)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("chrom_names", data=names, dtype=h5py.string_dtype(encoding="utf-8"))
        h5.create_dataset("chrom_sizes", data=[counts_by_chrom[c].shape[1] for c in names], dtype="u8")
        index = {name: k for k, name in enumerate(names)}
        h5.create_dataset("coords_chrom", data=[index[c] for c in chrom], dtype=np.uint8 if len(names) < 256 else "u2")
        h5.create_dataset("coords_start", data=np.asarray(start), dtype=np.uint32)
        h5.create_dataset("coords_stop", data=np.asarray(start) + length, dtype=np.uint32)
        head = h5.create_group("head_0")
        logits_ds = head.create_dataset("logits", (n, length, tracks), dtype=np.float32,
                                        chunks=(min(chunk, n), length, tracks))
        logcounts_ds = head.create_dataset("logcounts", (n,), dtype=np.float32, chunks=(min(chunk, n),))
        for i, j, logits, logcounts in predicted_slices(chrom, start, length, counts_by_chrom, smooth_by_chrom, rng,
                                                        slice_rows(n, tracks, length)):
            logits_ds[i:j] = logits.transpose(0, 2, 1)
            logcounts_ds[i:j] = logcounts
    return min(chunk, n)


def write_npz_predictions(out: Path, chrom, start, length: int, counts_by_chrom: dict, smooth_by_chrom: dict,
                          rng) -> int:
    """bpnet-lite 0.9 ``predict``'s files: ``predictions.profile.npz`` (``arr_0``, the logits ``(N, S, L)`` float32)
    and ``predictions.counts.npz`` (``arr_0``, ``(N, 1)``), as ``np.savez_compressed`` writes them (a deflated zip
    member ``arr_0.npy``), written slice by slice (the same slices, hence values, as the native layout's), and the
    windows as ``regions.bed`` (start..end: L wide, so bpnet-lite's midpoint ± L/2 is the window itself); returns
    the slice size."""
    n = len(start)
    tracks = next(iter(counts_by_chrom.values())).shape[0]
    rows = slice_rows(n, tracks, length)
    logcounts = np.empty((n, 1), np.float32)
    with zipfile.ZipFile(out / "predictions.profile.npz", "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("arr_0.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                     "fortran_order": False, "shape": (n, tracks, length)})
        for i, j, logits, predicted in predicted_slices(chrom, start, length, counts_by_chrom, smooth_by_chrom, rng,
                                                        rows):
            member.write(np.ascontiguousarray(logits, np.float32).tobytes())
            logcounts[i:j, 0] = predicted
    np.savez_compressed(out / "predictions.counts.npz", logcounts)
    write_bed(out / "regions.bed", chrom, start, length)
    return rows


def tiled_windows(sizes: dict, n_regions: int, length: int):
    """``n_regions`` windows of ``length`` spread evenly over the chromosomes' ``length``-wide tiles, at least one tile
    apart (none overlapping or touching), in genome order: chromosome and start."""
    chrom = np.concatenate([[c] * (size // length) for c, size in sizes.items()]).astype(object)
    start = np.concatenate([np.arange(size // length, dtype=np.int64) * length for size in sizes.values()])
    if len(start) < 2 * n_regions:
        raise SystemExit(f"the genome holds {len(start)} tiles of {length} bp, not twice {n_regions}: ask for fewer")
    pick = np.linspace(0, len(start) - 1, n_regions).round().astype(np.int64)
    return chrom[pick], start[pick]


def write_bigwig_predictions(out: Path, sizes: dict, chrom, start, length: int, counts_by_chrom: dict,
                             smooth_by_chrom: dict, rng) -> list:
    """The predictions as counts-scale bigWigs, one a track (``predicted.plus.bw``, ``predicted.minus.bw``; S = 1:
    ``predicted.bw``): each window's ``softmax(logits) * exp(logcounts)`` (softmax over every track and position,
    the native layout's logits and log counts of the same slices) as float32, one pyBigWig ``addEntries`` a window
    (one fixed-step block each, as chrombpnet's ``pred_bw`` and BPNet's ``export-bw`` write them); and the windows
    as ``regions.bed``. Returns the file names."""
    tracks = next(iter(counts_by_chrom.values())).shape[0]
    names = ["predicted.bw"] if tracks == 1 else ["predicted.plus.bw", "predicted.minus.bw"]
    rows = slice_rows(len(start), tracks, length)
    files = [pyBigWig.open(str(out / name), "w") for name in names]
    try:
        for bw in files:
            bw.addHeader(list(sizes.items()))
        for i, j, logits, logcounts in predicted_slices(chrom, start, length, counts_by_chrom, smooth_by_chrom, rng,
                                                        rows):
            z = logits.reshape(j - i, -1).astype(np.float64)
            z = np.exp(z - z.max(axis=1, keepdims=True))
            values = (z / z.sum(axis=1, keepdims=True) * np.exp(logcounts.astype(np.float64))[:, None])
            values = values.reshape(j - i, tracks, length).astype(np.float32)
            for r in range(j - i):
                for s, bw in enumerate(files):
                    bw.addEntries(chrom[i + r], int(start[i + r]), values=values[r, s].tolist(), span=1, step=1)
    finally:
        for bw in files:
            bw.close()
    write_bed(out / "regions.bed", chrom, start, length)
    return names


def write_narrowpeak(path: Path, chrom, start, length: int, input_width: int) -> None:
    """The regions as a narrowPeak file of ``input_width``-bp windows whose summit (column 10) is the centre of
    the ``length``-bp window at ``start``, in region order (scores descending, as a score-sorted peak file)."""
    summit_offset = input_width // 2
    left = np.asarray(start) + length // 2 - summit_offset
    with open(path, "w") as handle:
        for k, (c, a) in enumerate(zip(chrom, left.tolist())):
            handle.write(f"{c}\t{a}\t{a + input_width}\tpeak{k}\t{1000 - k * 1000 // len(left)}\t.\t"
                         f"10.0\t8.0\t6.0\t{summit_offset}\n")


def truth_names(n_tracks: int) -> list:
    """The observed bigWig files of a case with ``n_tracks`` tracks (more than two: a plus and a minus strand a
    task)."""
    if n_tracks <= 2:
        return ["observed.bw"] if n_tracks == 1 else ["observed.plus.bw", "observed.minus.bw"]
    return [f"observed.task{t}.{strand}.bw" for t in range(n_tracks // 2) for strand in ("plus", "minus")]


def make_case(out_dir, n_regions: int = 100_000, length: int = 1000, seed: int = 0, quiet: bool = False,
              shape: str = "chip") -> dict:
    """Write the case of ``shape`` into ``out_dir``; return its description (also saved as ``case.json``)."""
    kind = SHAPES[shape]
    length = kind.length or length
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    sizes = chromosome_sizes(n_regions, kind.genome_scale, kind.human_genome, kind.contigs)
    genome = sum(sizes.values())
    n_summits = int(n_regions * 0.6) + 10
    margin = max(0, kind.input_width - length) // 2 + 1
    summits, counts, smooth = {}, {}, {}
    for chrom, size in sizes.items():
        k = max(2, int(round(n_summits * size / genome)))
        summits[chrom] = np.sort(rng.integers(length + margin, size - length - margin, k))
        if kind.human_genome:  # kept sparse: one count per base of 3.1 Gb would take ~50 GB
            counts[chrom] = simulate_sparse(size, summits[chrom], rng, kind.n_tracks, kind.background_rate)
            smooth[chrom] = counts[chrom].smoothed()
            continue
        counts[chrom] = simulate(kind, size, summits[chrom], rng)
        smooth[chrom] = smoothed(counts[chrom])
    truth = truth_names(kind.n_tracks)
    for strand, name in enumerate(truth):
        write_strand_bigwig(out / name, sizes, counts, strand, every_base=kind.dense_background or kind.every_base,
                            scale=kind.scale, ucsc_layout=kind.ucsc_layout)
    n_windows = max(1, int(n_regions * kind.regions_scale))
    chrom, start, peak = choose_regions(sizes, summits, n_windows, length, rng, kind.peak_fraction,
                                        margin if kind.input_width else 0)
    if kind.predictions_layout == "bigwig":
        chrom, start = tiled_windows(sizes, n_regions, length)
        names = write_bigwig_predictions(out, sizes, chrom, start, length, counts, smooth, rng)
        chunk = 1
        files = {"predictions": ",".join(names), "truth": truth, "regions": "regions.bed"}
    elif kind.predictions_layout == "npz":
        chunk = write_npz_predictions(out, chrom, start, length, counts, smooth, rng)
        files = {"predictions": "predictions.profile.npz,predictions.counts.npz", "truth": truth,
                 "regions": "regions.bed"}
    else:
        chunk = write_predictions(out / "predictions.h5", chrom, start, peak, length, counts, smooth, rng,
                                  kind.predictions_layout, kind.region_chunks)
        files = {"predictions": "predictions.h5", "truth": truth}
    if kind.input_width:
        write_narrowpeak(out / "peaks.narrowPeak", chrom, start, length, kind.input_width)
        files["regions"] = "peaks.narrowPeak"
    description = {"shape": shape, "shape_description": kind.description, "n_regions": len(start),
                   "length": length, "n_tracks": kind.n_tracks, "seed": seed, "chrom_sizes": sizes,
                   "predictions_chunk_regions": chunk, "predictions_layout": kind.predictions_layout, "files": files,
                   "generation_s": round(time.perf_counter() - began, 1)}
    (out / "case.json").write_text(json.dumps(description, indent=2) + "\n")
    if not quiet:
        print(f"made {out}: {shape}, {len(start)} regions, S = {kind.n_tracks}, L = {length}, {len(sizes)} "
              f"chromosomes ({genome / 1e6:.0f} Mb) in {description['generation_s']} s")
    return description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="chip",
                        help="; ".join(f"{name}: {s.description}" for name, s in SHAPES.items()))
    parser.add_argument("--regions", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_case(args.out_dir, args.regions, args.length, args.seed, shape=args.shape)


if __name__ == "__main__":
    main()
