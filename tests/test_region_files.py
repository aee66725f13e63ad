"""Region files read column by column (the usual file) give exactly what the row-by-row reading gives: the same
windows and source, or the same error naming the same line, on clean and on hostile files."""

import gzip

import numpy as np
import pytest

from bpnet_eval.errors import BpnetEvalError
from bpnet_eval.regions import _read_plain_table, _read_rows, read_region_file


def outcome(read, path, length, regions_format, window_center, chroms):
    """The windows read (chrom, start, end, source) or the error raised (type and message)."""
    try:
        table = read(path, length, regions_format, window_center, chroms)
    except BpnetEvalError as err:
        return type(err).__name__, str(err)
    return list(table.chrom), table.start.tolist(), table.end.tolist(), table.source


def peak_line(rng, k):
    start = int(rng.integers(0, 10**7))
    width = int(rng.integers(1, 3000))
    return (f"chr{int(rng.integers(1, 4))}\t{start}\t{start + width}\tpeak{k}\t{int(rng.integers(0, 1000))}\t.\t"
            f"{rng.uniform(0, 50):.5f}\t{rng.uniform(0, 300):.3f}\t-1\t{int(rng.integers(0, width + 1))}")


HOSTILE = {
    "clean": lambda lines: lines,
    "no final newline": lambda lines: lines,
    "bed3": lambda lines: ["\t".join(line.split("\t")[:3]) for line in lines],
    "bed6": lambda lines: ["\t".join(line.split("\t")[:6]) for line in lines],
    "comment and header": lambda lines: ["# made by hand", "track name=peaks"] + lines,
    "blank line": lambda lines: lines[:3] + ["   "] + lines[3:],
    "crlf": lambda lines: [line + "\r" for line in lines],
    "spaces": lambda lines: [line.replace("\t", " ") for line in lines],
    "one extra column": lambda lines: lines[:4] + [lines[4] + "\textra"] + lines[5:],
    "negative start": lambda lines: lines[:2] + [lines[2].replace("\t", "\t-", 1)] + lines[3:],
    "plus sign": lambda lines: lines[:2] + [lines[2].replace("\t", "\t+", 1)] + lines[3:],
    "end before start": lambda lines: lines[:6] + ["chr1\t500\t400\tp\t0\t.\t1\t1\t1\t0"] + lines[7:],
    "summit outside": lambda lines: lines[:6] + ["chr1\t400\t500\tp\t0\t.\t1\t1\t1\t101"] + lines[7:],
    "summit not integer": lambda lines: lines[:6] + ["chr1\t400\t500\tp\t0\t.\t1\t1\t1\tx"] + lines[7:],
    "dot scores": lambda lines: [line.replace("\t-1\t", "\t.\t") for line in lines],
    "word score": lambda lines: lines[:1] + [lines[1].replace("\t-1\t", "\thigh\t")] + lines[2:],
    "huge coordinate": lambda lines: lines[:1] + ["chr1\t1\t99999999999999999999\tp\t0\t.\t1\t1\t1\t0"] + lines[1:],
    "non-ascii digit": lambda lines: lines[:1] + ["chr1\t1\t1٣\tp\t0\t.\t1\t1\t1\t0"] + lines[1:],
    "only one column": lambda lines: [line.split("\t")[0] for line in lines],
    "non-ascii names": lambda lines: [line.replace("chr", "chrÅé", 1) if k % 3 else line for k, line in enumerate(lines)],
    "contig names": lambda lines: [line.replace("chr", "tig" if k % 2 else "b", 1) for k, line in enumerate(lines)],
    "track chromosome": lambda lines: lines[:5] + [lines[5].replace("chr", "trackchr", 1)] + lines[6:],
    "empty name": lambda lines: lines[:3] + [lines[3][lines[3].index("\t"):]] + lines[4:],
    "nul byte": lambda lines: lines[:3] + [lines[3].replace("peak", "pe\0ak")] + lines[4:],
    "leading zeros": lambda lines: [line.replace("\t", "\t00", 1) for line in lines],
    "18 and 19 digits": lambda lines: lines[:1] + ["chr1\t123456789012345678\t123456789012345679\tp\t0\t.\t1\t1\t1\t0",
                                                   "chr1\t1234567890123456789\t1234567890123456790\tp\t0\t.\t1\t1\t1\t0"]
                                                  + lines[1:],
    "decimals of every form": lambda lines: [line.replace("\t-1\t", f"\t{form}\t") for line, form in
                                             zip(lines, ["1.", ".5", "-.5", "-0", "7", "-12.25", "."] * 6)],
    "odd numbers": lambda lines: [line.replace("\t-1\t", f"\t{form}\t") for line, form in
                                  zip(lines, ["1e5", "inf", "nan", "+1", "-1E-3", "1_0", " 2", "3"] * 5)],
    "two dots": lambda lines: lines[:7] + [lines[7].replace("\t-1\t", "\t1.2.3\t")] + lines[8:],
    "minus inside": lambda lines: lines[:7] + [lines[7].replace("\t-1\t", "\t1-2\t")] + lines[8:],
    "not numbers": lambda lines: lines[:7] + [lines[7].replace("\t-1\t", f"\t{form}\t") for form in
                                              ("1.2.3", "--1", "-", "-.", "1-")] + lines[8:],
}


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("hostile", list(HOSTILE))
def test_column_reading_equals_row_reading(tmp_path, hostile, gzipped):
    rng = np.random.default_rng(len(hostile))
    lines = HOSTILE[hostile]([peak_line(rng, k) for k in range(40)])
    text = "\n".join(lines) + ("" if hostile == "no final newline" else "\n")
    path = tmp_path / "regions.narrowPeak"
    path.write_bytes(gzip.compress(text.encode()) if gzipped else text.encode())
    for regions_format in ("auto", "bed", "narrowpeak"):
        for window_center in (None, "summit", "midpoint"):
            for length, chroms in ((1000, None), (0, None), (51, ["chr2", "chr3"])):
                options = (path, length, regions_format, window_center, chroms)
                want = outcome(_read_rows, *options)
                assert outcome(read_region_file, *options) == want, (regions_format, window_center, length)
    if hostile in ("clean", "no final newline", "bed3", "bed6", "dot scores", "non-ascii names", "contig names",
                   "leading zeros", "decimals of every form", "odd numbers", "empty name"):  # read by column
        assert _read_plain_table(path, 1000, "auto", None, None) is not None
