"""Hostile inputs through the installed CLI (issue 12): region files whose rows disagree on their format,
coordinates beyond int64, named pipes, directories, sockets and devices given as files, files without read
permission, and prediction datasets that are not real numbers.

Each attack: the exit code, exactly one stderr line ``bpnet-eval: error: ...`` naming the file (and the line
where there is one), no traceback, no report written, the inputs unchanged; through ``score`` and ``check``
where both read the input. A named pipe must never block either command (each run has a timeout).
"""

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from bpnet_eval.errors import InputError, UsageError
from bpnet_eval.options import ReadOptions
from bpnet_eval.regions import read_region_file
from bpnet_eval.sources.predictions import ArrayPredictions
from tests.support.cases import make_case, write_predictions
from tests.support.cli import CLI, run_cli
from tests.support.checks import assert_one_line_error as one_line_error

LENGTH = 50
TIMEOUT = 120  # a run that blocks (a named pipe opened for reading) fails the test instead of hanging it
INT64_OVER = "99999999999999999999"  # > 2**63 - 1


# ------------------------------------------------------------------ the case, readable by everyone
@pytest.fixture(scope="module")
def base():
    """A scoring case in a directory every user may read (the no-permission attacks run as another user)."""
    root = Path(tempfile.mkdtemp(prefix="bpnet-hostile-", dir="/tmp"))
    os.chmod(root, 0o755)
    case = make_case(root, n=12, length=LENGTH)
    for path in root.iterdir():
        os.chmod(path, 0o644)
    yield case, root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def work():
    """A fresh directory for one attack's inputs and report, readable and writable by everyone."""
    root = Path(tempfile.mkdtemp(prefix="bpnet-attack-", dir="/tmp"))
    os.chmod(root, 0o777)
    yield root
    for path in root.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, 0o777 if path.is_dir() else 0o666)
    shutil.rmtree(root, ignore_errors=True)


def bed_rows(case, shift=0):
    return [f"{c}\t{s + shift}\t{e + shift}" for c, s, e in zip(case.chrom, case.start, case.end)]


def narrowpeak_rows(case):
    """Peaks ``start+10 .. start+10+L`` with summit offset ``L//2 - 10``: read as narrowPeak the windows are the
    case's (``start .. start+L``); read as BED they are shifted by 10 bp (and still score without an error)."""
    return [f"{c}\t{s + 10}\t{s + 10 + LENGTH}\tpeak{i}\t0\t.\t1.5\t-1\t-1\t{LENGTH // 2 - 10}"
            for i, (c, s) in enumerate(zip(case.chrom, case.start))]


def write_lines(path, rows):
    path.write_text("".join(row + "\n" for row in rows))
    return path


def copy_predictions(case, path, **replace):
    """The case's predictions HDF5 with some datasets replaced (``name=array``, ``/`` as ``__``)."""
    replace = {name.replace("__", "/"): value for name, value in replace.items()}
    with h5py.File(case.predictions, "r") as source, h5py.File(path, "w") as out:
        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                if name in replace:
                    value = replace.pop(name)
                    if isinstance(value, tuple):  # (data, dtype)
                        out.create_dataset(name, data=value[0], dtype=value[1])
                    else:
                        out.create_dataset(name, data=value)
                else:
                    source.copy(obj, out, name)
        source.visititems(copy)
    return path


def make_fifo(path):
    os.mkfifo(path)
    return path


def make_socket(path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays
    return path


# ------------------------------------------------------------------ the attacks
# Each returns ``(inputs, options, fragments)``: PREDICTIONS and TRUTH arguments, options both commands take,
# and the text the one error line must hold (the file, and the line or dataset).

def narrowpeak_with_an_eleventh_column(case, tmp):
    rows = narrowpeak_rows(case)
    rows[5] += "\textra"
    regions = write_lines(tmp / "peaks.narrowPeak", rows)
    return [case.predictions, *case.bigwigs], ["-r", regions], ["peaks.narrowPeak", "line 6", "--regions-format"]


def narrowpeak_summit_outside_its_peak(case, tmp):
    rows = narrowpeak_rows(case)
    fields = rows[3].split("\t")
    fields[9] = str(LENGTH + 5)  # past the peak's end; the window would still lie on the chromosome
    rows[3] = "\t".join(fields)
    regions = write_lines(tmp / "peaks.narrowPeak", rows)
    return [case.predictions, *case.bigwigs], ["-r", regions], ["peaks.narrowPeak", "line 4", "summit",
                                                                "--regions-format bed"]


def bed_with_one_narrowpeak_row(case, tmp):
    rows = bed_rows(case)
    c, s, e = rows[2].split("\t")
    rows[2] = f"{c}\t{s}\t{e}\tp\t0\t.\t1\t1\t1\t{LENGTH // 2}"
    regions = write_lines(tmp / "r.bed", rows)
    return [case.predictions, *case.bigwigs], ["-r", regions], ["r.bed", "line 3", "--regions-format"]


def narrowpeak_forced_on_a_bed_file(case, tmp):
    regions = write_lines(tmp / "r.bed", bed_rows(case))
    return ([case.predictions, *case.bigwigs], ["-r", regions, "--regions-format", "narrowpeak"],
            ["r.bed", "line 1", "summit", "--regions-format bed"])


def bed_start_and_end_beyond_int64(case, tmp):
    rows = bed_rows(case)
    rows[4] = f"{case.chrom[4]}\t{INT64_OVER}\t{INT64_OVER}5"
    regions = write_lines(tmp / "r.bed", rows)
    return [case.predictions, *case.bigwigs], ["-r", regions], ["r.bed", "line 5", "64-bit"]


def bed_end_beyond_int64(case, tmp):
    rows = bed_rows(case)
    rows[0] = f"{case.chrom[0]}\t{case.start[0]}\t{INT64_OVER}"
    regions = write_lines(tmp / "r.bed", rows)
    return [case.predictions, *case.bigwigs], ["-r", regions], ["r.bed", "line 1", "64-bit"]


def narrowpeak_summit_beyond_int64(case, tmp):
    rows = narrowpeak_rows(case)
    fields = rows[1].split("\t")
    fields[9] = INT64_OVER
    rows[1] = "\t".join(fields)
    regions = write_lines(tmp / "peaks.narrowPeak", rows)
    return [case.predictions, *case.bigwigs], ["-r", regions], ["peaks.narrowPeak", "line 2", "summit"]


def fifo_as_truth_bigwig(case, tmp):
    fifo = make_fifo(tmp / "pipe.bw")
    return [case.predictions, fifo, case.bigwigs[1]], [], ["pipe.bw", "named pipe"]


def fifo_as_regions(case, tmp):
    fifo = make_fifo(tmp / "pipe.bed")
    return [case.predictions, *case.bigwigs], ["-r", fifo], ["pipe.bed", "named pipe"]


def fifo_as_npz_predictions(case, tmp):
    logits = tmp / "logits.npz"
    np.savez(logits, case.logits)
    fifo = make_fifo(tmp / "logcounts.npz")
    regions = write_lines(tmp / "r.bed", bed_rows(case))
    return [f"{logits},{fifo}", *case.bigwigs], ["-r", regions], ["logcounts.npz", "named pipe"]


def fifo_as_predicted_bigwig(case, tmp):
    fifo = make_fifo(tmp / "pred.minus.bw")
    regions = write_lines(tmp / "r.bed", bed_rows(case))
    return [f"{case.bigwigs[0]},{fifo}", *case.bigwigs], ["-r", regions], ["pred.minus.bw", "named pipe"]


def directory_as_truth_bigwig(case, tmp):
    (tmp / "obs.bw").mkdir()
    return [case.predictions, case.bigwigs[0], tmp / "obs.bw"], [], ["obs.bw", "directory"]


def directory_as_predicted_bigwig(case, tmp):
    (tmp / "pred.plus.bw").mkdir()
    regions = write_lines(tmp / "r.bed", bed_rows(case))
    return [f"{tmp / 'pred.plus.bw'},{case.bigwigs[1]}", *case.bigwigs], ["-r", regions], ["pred.plus.bw",
                                                                                             "directory"]


def socket_as_truth_bigwig(case, tmp):
    sock = make_socket(tmp / "s.bw")
    return [case.predictions, sock, case.bigwigs[1]], [], ["s.bw", "socket, not a regular file"]


def device_as_truth_bigwig(case, tmp):
    os.symlink("/dev/null", tmp / "null.bw")
    return [case.predictions, case.bigwigs[0], tmp / "null.bw"], [], ["null.bw", "device, not a regular file"]


def complex_logits_hdf5(case, tmp):
    path = copy_predictions(case, tmp / "p.h5", predictions__logits=case.logits.astype(np.complex64))
    return [path, *case.bigwigs], [], ["p.h5", "'predictions/logits'", "complex"]


def text_logcounts_hdf5(case, tmp):
    text = np.array([str(v).encode() for v in case.logcounts.reshape(-1)])
    path = copy_predictions(case, tmp / "p.h5", predictions__logcounts=text)
    return [path, *case.bigwigs], [], ["p.h5", "'predictions/logcounts'", "text"]


def variable_length_string_logits_hdf5(case, tmp):
    strings = np.array([" ".join(map(str, row.reshape(-1)[:3])) for row in case.logits], dtype=object)
    path = copy_predictions(case, tmp / "p.h5", predictions__logits=(strings, h5py.string_dtype()))
    return [path, *case.bigwigs], [], ["p.h5", "'predictions/logits'", "text"]


def compound_logcounts_hdf5(case, tmp):
    records = np.zeros(len(case.logcounts), dtype=[("value", "f4"), ("other", "i4")])
    records["value"] = case.logcounts.reshape(-1)
    path = copy_predictions(case, tmp / "p.h5", predictions__logcounts=records)
    return [path, *case.bigwigs], [], ["p.h5", "'predictions/logcounts'", "records"]


def complex_logits_npz(case, tmp):
    np.savez(tmp / "logits.npz", case.logits.astype(np.complex128))
    np.savez(tmp / "logcounts.npz", case.logcounts)
    regions = write_lines(tmp / "r.bed", bed_rows(case))
    return [f"{tmp / 'logits.npz'},{tmp / 'logcounts.npz'}", *case.bigwigs], ["-r", regions], \
        ["logits.npz", "'arr_0'", "complex"]


def text_logcounts_npz(case, tmp):
    np.savez(tmp / "logits.npz", case.logits)
    np.savez(tmp / "logcounts.npz", np.array([str(v) for v in case.logcounts.reshape(-1)]))
    regions = write_lines(tmp / "r.bed", bed_rows(case))
    return [f"{tmp / 'logits.npz'},{tmp / 'logcounts.npz'}", *case.bigwigs], ["-r", regions], \
        ["logcounts.npz", "'arr_0'", "text"]


def text_stored_coordinates(case, tmp):
    starts = np.array([b"start%d" % i for i in range(len(case.start))])
    path = copy_predictions(case, tmp / "p.h5", coords__coords_start=starts)
    return [path, *case.bigwigs], [], ["p.h5", "cannot read the coordinates stored"]


ATTACKS = [narrowpeak_with_an_eleventh_column, narrowpeak_summit_outside_its_peak, bed_with_one_narrowpeak_row,
           narrowpeak_forced_on_a_bed_file, bed_start_and_end_beyond_int64,
           bed_end_beyond_int64, narrowpeak_summit_beyond_int64, fifo_as_truth_bigwig, fifo_as_regions,
           fifo_as_npz_predictions, fifo_as_predicted_bigwig, directory_as_truth_bigwig,
           directory_as_predicted_bigwig, socket_as_truth_bigwig, device_as_truth_bigwig, complex_logits_hdf5,
           text_logcounts_hdf5, variable_length_string_logits_hdf5, compound_logcounts_hdf5, complex_logits_npz,
           text_logcounts_npz, text_stored_coordinates]


# ------------------------------------------------------------------ checks shared by every attack
def snapshot(*roots):
    """Every file under ``roots``: its kind and mode, and the hash of a regular file's content (a named pipe
    is never opened)."""
    state = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            info = path.lstat()
            digest = None
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o444:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path)] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_size, digest)
    return state


def command(name, inputs, options, out):
    args = [name, *inputs, *options]
    return args + ["-o", out, "-q", "--no-plots"] if name == "score" else args


def assert_one_line_error(result, code, fragments):
    """``checks.assert_one_line_error``, and never an "unexpected" error."""
    one_line_error(result, code, *fragments)
    assert "unexpected" not in result.stderr, result.stderr


def assert_no_report(out):
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")], list(out.iterdir())


# A named pipe could block the command: these run as a script of their own, with a timeout.
BLOCKING = {fifo_as_truth_bigwig, fifo_as_regions, fifo_as_npz_predictions, fifo_as_predicted_bigwig}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["score", "check"])
@pytest.mark.parametrize("attack", ATTACKS, ids=[a.__name__ for a in ATTACKS])
def test_hostile_input_is_one_line_exit_3_and_no_report(forked, base, work, attack, name):
    case, root = base
    inputs, options, fragments = attack(case, work)
    before = snapshot(root, work)
    out = work / "report"
    args = command(name, inputs, options, out)
    result = run_cli(*args, cwd=work, timeout=TIMEOUT) if attack in BLOCKING else forked(*args, cwd=work)
    assert_one_line_error(result, 3, fragments)
    assert_no_report(out)
    assert snapshot(root, work) == before


# ------------------------------------------------------------------ files without read permission
def run_unprivileged(args, cwd):
    """The CLI as a user that cannot read a file whose read permission is removed (``nobody`` when root)."""
    prefix = []
    if os.geteuid() == 0:  # root reads everything: run as nobody
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot drop the permission to read every file")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return subprocess.run([*prefix, str(CLI), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "HOME": str(cwd)}, timeout=TIMEOUT)


def unreadable_predictions(case, tmp):
    path = Path(shutil.copy(case.predictions, tmp / "p.h5"))
    return path, [path, *case.bigwigs], []


def unreadable_truth_bigwig(case, tmp):
    path = Path(shutil.copy(case.bigwigs[1], tmp / "obs1.bw"))
    return path, [case.predictions, case.bigwigs[0], path], []


def unreadable_regions(case, tmp):
    path = write_lines(tmp / "r.bed", bed_rows(case))
    return path, [case.predictions, *case.bigwigs], ["-r", path]


UNREADABLE = [unreadable_predictions, unreadable_truth_bigwig, unreadable_regions]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["score", "check"])
@pytest.mark.parametrize("attack", UNREADABLE, ids=[a.__name__ for a in UNREADABLE])
def test_file_without_read_permission_is_exit_3_naming_it(base, work, attack, name):
    case, root = base
    target, inputs, options = attack(case, work)
    for path in work.iterdir():
        os.chmod(path, 0o644)
    os.chmod(target, 0)
    before = snapshot(root, work)
    out = work / "report"
    result = run_unprivileged(command(name, inputs, options, out), work)
    assert_one_line_error(result, 3, [target.name])
    assert_no_report(out)
    assert snapshot(root, work) == before


# ------------------------------------------------------------------ --regions-format decides what auto refuses
def scored_starts(report):
    lines = (report / "regions.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return [int(line.split("\t")[header.index("start")]) for line in lines[1:]]


@pytest.mark.slow
def test_regions_format_reads_a_file_auto_refuses_as_asked(base, work):
    case, _ = base
    rows = narrowpeak_rows(case)
    rows[5] += "\textra"
    peaks = write_lines(work / "peaks.narrowPeak", rows)
    common = [case.predictions, *case.bigwigs, "-r", peaks, "-q", "--no-plots"]
    as_peaks = run_cli("score", *common, "--regions-format", "narrowpeak", "-o", work / "np", timeout=TIMEOUT)
    assert as_peaks.returncode == 0, as_peaks.stderr
    assert scored_starts(work / "np") == case.start.tolist()  # start + summit - L//2: the case's windows
    as_bed = run_cli("score", *common, "--regions-format", "bed", "-o", work / "bed", timeout=TIMEOUT)
    assert as_bed.returncode == 0, as_bed.stderr
    assert scored_starts(work / "bed") == (case.start + 10).tolist()  # start..end: the peaks themselves
    clean = write_lines(work / "clean.narrowPeak", narrowpeak_rows(case))  # auto: narrowPeak, as before
    auto = run_cli("score", case.predictions, *case.bigwigs, "-r", clean, "-q", "--no-plots", "-o", work / "auto",
                   timeout=TIMEOUT)
    assert auto.returncode == 0, auto.stderr
    assert (work / "auto" / "regions.tsv").read_bytes() == (work / "np" / "regions.tsv").read_bytes()


@pytest.mark.slow
def test_a_bad_regions_format_is_a_usage_error(base, work):
    case, _ = base
    result = run_cli("check", case.predictions, *case.bigwigs, "--regions-format", "gff", timeout=TIMEOUT)
    assert_one_line_error(result, 2, ["--regions-format", "'gff'", "auto", "bed", "narrowpeak"])


# ------------------------------------------------------------------ the library, without the CLI
def test_region_file_formats_in_the_library(tmp_path):
    rows = ["chr1\t100\t200\tp\t0\t.\t1\t1\t1\t40"] * 3
    peaks = write_lines(tmp_path / "p.narrowPeak", rows)
    assert read_region_file(peaks, 20).start.tolist() == [130] * 3
    assert read_region_file(peaks, 20, "bed").start.tolist() == [100] * 3
    assert read_region_file(peaks, 20, "narrowpeak").source.endswith("[narrowPeak (start + summit ± L/2)]")
    odd = write_lines(tmp_path / "odd.narrowPeak", rows + [rows[0] + "\tx"])
    with pytest.raises(InputError, match=r"odd.narrowPeak: line 4 .*--regions-format"):
        read_region_file(odd, 20)
    assert read_region_file(odd, 20, "narrowpeak").start.tolist() == [130] * 4
    with pytest.raises(UsageError, match="--regions-format"):
        ReadOptions(regions_format="gff")
    assert ReadOptions().regions_format == "auto"


def test_predictions_that_are_not_real_numbers_are_refused_and_numbers_are_not(tmp_path):
    """Complex and text arrays are refused; the refusal is by dtype only: integer logits and float16 log counts
    are numbers and are read."""
    logits, logcounts = np.zeros((3, 2, 10)), np.zeros((3, 1))
    with pytest.raises(UsageError, match="complex"):
        ArrayPredictions(logits.astype(complex), logcounts)
    with pytest.raises(UsageError, match="text"):
        ArrayPredictions(logits, logcounts.astype(str))
    case = make_case(tmp_path, n=4, length=10)
    path = write_predictions(tmp_path / "ints.h5", np.round(case.logits).astype(np.int32),
                             case.logcounts.astype(np.float16), case.chrom, case.start, case.end)
    from bpnet_eval.sources import open_predictions

    source = open_predictions(str(path))
    try:
        logits, logcounts = source.read(0, 4)
        assert logits.dtype.kind == "i" and logcounts.dtype == np.float16
    finally:
        source.close()
