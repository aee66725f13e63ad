"""Container conditions: any user, a read-only install, no writable HOME, caches in a private per-uid directory.

``test_readonly_install_as_another_user`` reproduces them directly (needs root to switch users);
the ``test_docker_*`` tests build the top-level Dockerfile offline (``--network none``, from docker/local) and
run the image as docs/clusters.md says (any ``--user``, ``--read-only``, ``--cpus``, ``docker stop``); they skip
when no Docker daemon answers (CI starts none).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.cli import CLI, REPO

pytestmark = pytest.mark.slow  # installs the package, runs the CLI as another user, builds an image

FIXTURE = REPO / "data" / "fixtures"
NOBODY = 65534
FIXTURE_ARGS = ("predictions.h5", "observed.plus.bw", "observed.minus.bw")


def world_dir(prefix: str) -> Path:
    """A temporary directory other users can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def host_report(tmp_path) -> dict:
    out = tmp_path / "host"
    result = subprocess.run([str(CLI), "score", *(FIXTURE / f for f in FIXTURE_ARGS), "-o", str(out), "-q",
                             "--no-plots"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "summary.json").read_text())


def same_numbers(a: dict, b: dict) -> None:
    assert a["n_regions"] == b["n_regions"]
    for metric, stats in a["metrics"].items():
        assert stats == pytest.approx(b["metrics"][metric], rel=1e-12, nan_ok=True)
    assert a["counts"] == pytest.approx(b["counts"], rel=1e-12)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="switching to another user needs root; run the suite as root to test a read-only install")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_readonly_install_as_another_user(tmp_path):
    """Install the package into a fresh venv, make it read-only, and score as 'nobody' with HOME unwritable."""
    root = world_dir("bpnet-eval-ro-")
    try:
        source = root / "src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(REPO / name, source / name)
        shutil.copytree(REPO / "bpnet_eval", source / "bpnet_eval", ignore=shutil.ignore_patterns("__pycache__"))
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = next((venv / "lib").glob("python3*/site-packages"))
        # numpy, torch, h5py, ... from the test environment; bpnet-eval itself installed (not editable) below
        deps = [p for p in sys.path if p.endswith("site-packages")]
        (site / "test-deps.pth").write_text("\n".join(deps) + "\n")
        # the new venv's own interpreter (pip comes from the test environment): pip then installs into the new
        # venv only, and --ignore-installed keeps it from touching the test environment's bpnet-eval
        install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                                  "--no-build-isolation", "--no-index", "--ignore-installed", str(source)],
                                 capture_output=True, text=True)
        if install.returncode != 0:
            pytest.skip(f"cannot build the package here: {install.stderr.strip().splitlines()[-1:]}")
        shutil.rmtree(source)
        for name in FIXTURE_ARGS:
            shutil.copy(FIXTURE / name, root / name)
        subprocess.run(["chmod", "-R", "a-w,a+rX", str(root)], check=True)  # install and inputs read-only
        installed = sorted(root.rglob("*"))
        work = world_dir("bpnet-eval-out-")
        os.chown(work, NOBODY, NOBODY)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "LANG": "C.UTF-8"}  # HOME exists but is not writable
        command = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                   str(venv / "bin" / "bpnet-eval"), "score", *(str(root / f) for f in FIXTURE_ARGS),
                   "-o", str(work / "report"), "-q"]
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        summary = json.loads((work / "report" / "summary.json").read_text())
        module = subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                                 str(venv / "bin" / "python"), "-c", "import bpnet_eval; print(bpnet_eval.__file__)"],
                                capture_output=True, text=True, env=env, cwd=work)
        assert module.stdout.startswith(str(venv)), module.stdout + module.stderr  # the read-only copy ran
        assert sorted(root.rglob("*")) == installed  # nothing written into the install or HOME
        same_numbers(summary, host_report(tmp_path))
        bad = subprocess.run(command[:8] + [str(root / "predictions.h5"), str(root / "observed.plus.bw"), "-o",
                                            str(work / "bad"), "-q"], capture_output=True, text=True, env=env, cwd=work)
        assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
            f"bpnet-eval: error: {root / 'observed.plus.bw'}: 1 observed track(s) for 2 predicted track(s) in "
            f"{root / 'predictions.h5'}; give one bigWig per predicted track, in track order (stranded: plus, then "
            "minus)"]
        assert result.stderr == ""  # no cache warnings either (MPLCONFIGDIR went to a private temp dir)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)])
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True) if "work" in locals() else None


def docker_ready():
    """None when a Docker daemon answers, else why not."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"no Docker daemon answers ({(probe.stderr.strip().splitlines() or ['?'])[-1]})"
    return None


def docker_base() -> str:
    """The base image: $BPNET_EVAL_DOCKER_BASE, else a local Debian import if present, else the Dockerfile default."""
    if os.environ.get("BPNET_EVAL_DOCKER_BASE"):
        return os.environ["BPNET_EVAL_DOCKER_BASE"]
    local = subprocess.run(["docker", "image", "inspect", "local/debian:bookworm"], capture_output=True)
    return "local/debian:bookworm" if local.returncode == 0 else "python:3.11-slim-bookworm"


def build_context(tmp_path) -> Path:
    """What ``docker build .`` sends, with the wheels of docker/local (hard links where possible); the wheels are
    fetched into the context with docker/fetch-wheels.sh when the checkout has none."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, context / name)
    shutil.copytree(REPO / "bpnet_eval", context / "bpnet_eval", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "docker", context / "docker", copy_function=link_or_copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    if not list((context / "docker" / "local").glob("torch-*+cpu-*.whl")):
        fetch = subprocess.run(["bash", str(context / "docker" / "fetch-wheels.sh")], capture_output=True, text=True,
                               timeout=1800)
        if fetch.returncode != 0:
            pytest.skip(f"no wheels in docker/local and docker/fetch-wheels.sh failed: {fetch.stderr.strip()[-300:]}")
    return context


def link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def docker(*args, timeout=600, **kwargs):
    return subprocess.run(["docker", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The image built as docs/clusters.md says: a base with Python (the Dockerfile's first stage: apt on a plain
    Debian base), then the image itself with no network at all (``--network none``), from docker/local."""
    why = docker_ready()
    if why is not None:
        pytest.skip(f"Docker image not built: {why}")
    context = build_context(tmp_path_factory.mktemp("docker"))
    python, tag = f"bpnet-eval-python:pytest-{os.getpid()}", f"bpnet-eval:pytest-{os.getpid()}"  # runs side by side
    base = docker("build", "--network", "host", "--target", "python", "--build-arg", f"BASE={docker_base()}",
                  "-t", python, context, timeout=1800)
    if base.returncode != 0:
        pytest.skip(f"no base image with Python here (network or base image?): {base.stderr.strip()[-300:]}")
    build = docker("build", "--network", "none", "--build-arg", f"BASE={python}", "-t", tag, context, timeout=1800)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]  # offline: nothing else may fail
    torch = docker("run", "--rm", "--entrypoint", "python3", tag, "-c",
                   "import torch; print(torch.__version__, torch.version.cuda)")
    assert torch.stdout.split() == ["2.13.0+cpu", "None"], torch.stderr  # the build named in docker/constraints.txt
    yield tag
    docker("rmi", tag, python)  # the layers stay in the build cache


def mounted_dir(tmp_path, name: str) -> Path:
    """A directory owned by uid 1000 (not the image's 10001) holding the fixture inputs."""
    work = tmp_path / name
    work.mkdir()
    for f in FIXTURE_ARGS:
        shutil.copy(FIXTURE / f, work / f)
    for path in (work, *work.iterdir()):
        os.chown(path, 1000, 1000) if os.geteuid() == 0 else None
    return work


def test_docker_image_scores_as_the_readme_says(image, tmp_path):
    """Any uid (--user), relative paths, the default report inside the mounted directory, read-only without
    a tmpfs (no cache variable pointing anywhere shared), the numbers of the host."""
    work = mounted_dir(tmp_path, "work")
    user = f"{os.getuid() if os.geteuid() else 1000}:{os.getgid() if os.geteuid() else 1000}"
    result = docker("run", "--rm", "--read-only", "--user", user, "-v", f"{work}:/data", image, "score",
                    *FIXTURE_ARGS, "-q")
    assert result.returncode == 0, result.stderr
    # no warning about a cache directory, no traceback; matplotlib says when building its font cache (a fresh
    # container builds it each run) takes over 5 s, which a loaded machine can take
    assert result.stderr.replace("Matplotlib is building the font cache; this may take a moment.\n", "") == ""
    report = work / "bpnet-eval-predictions"
    assert (report / "report.html").is_file() and (report / "profile_examples.png").is_file()  # figures by default
    assert report.stat().st_uid == int(user.split(":")[0])
    same_numbers(json.loads((report / "summary.json").read_text()), host_report(tmp_path))
    bad = docker("run", "--rm", "--user", user, "-v", f"{work}:/data", image, "score", "predictions.h5", "nope.bw",
                 "observed.minus.bw", "-o", "bad", "-q")
    assert bad.returncode == 3 and bad.stderr.strip().splitlines() == [
        "bpnet-eval: error: nope.bw: cannot open bigWig file (No such file or directory); check the path and "
        "its read permission"]
    assert not (work / "bad").exists()
    # without the mount the default report would be lost with the container: refused, in one line, exit 3
    lost = docker("run", "--rm", "--user", user, "-v", f"{work}:/in:ro", image, "score",
                  *(f"/in/{f}" for f in FIXTURE_ARGS), "-q")
    assert lost.returncode == 3 and len(lost.stderr.strip().splitlines()) == 1 and "/data" in lost.stderr


def test_docker_image_holds_no_wheel_and_no_ca_bundle(image):
    """The build stage's wheels and CA bundle, and torch's C++ headers and tests, are not in the image."""
    found = docker("run", "--rm", "--entrypoint", "find", image, "/", "-xdev", "(", "-name", "*.whl", "-o", "-name",
                   "ca.crt", "-o", "-path", "*/docker/local", "-o", "-path", "*/torch/include", "-o", "-path",
                   "*/torch/test", ")", "-print")
    assert found.returncode in (0, 1) and found.stdout == "", found.stdout


def test_docker_cpus_limit_gives_one_thread_and_no_reader_process(image):
    """``docker run --cpus 1`` (the cgroup CPU quota, v1 or v2): one CPU, so one torch thread and the observed
    tracks read in a thread, whatever the affinity mask says."""
    probe = ("from bpnet_eval.environment import allotted_cpus, torch_threads; "
             "from bpnet_eval.inputs import default_read_workers; "
             "print(allotted_cpus(), torch_threads(), default_read_workers(100))")
    limited = docker("run", "--rm", "--cpus", "1", "--entrypoint", "python3", image, "-c", probe)
    assert limited.returncode == 0, limited.stderr
    assert limited.stdout.split() == ["1", "1", "0"]
    free = docker("run", "--rm", "--entrypoint", "python3", image, "-c", probe)
    cpus = len(os.sched_getaffinity(0))
    assert free.stdout.split()[:2] == [str(cpus), str(cpus)]


def test_docker_stop_ends_a_run_at_once_and_leaves_no_report(image, tmp_path):
    work = mounted_dir(tmp_path, "stop")
    user = f"{os.getuid() if os.geteuid() else 1000}:{os.getgid() if os.geteuid() else 1000}"
    # a run of several seconds (every metric, a region a batch): the fixture's default run ends in under a second,
    # before the stop below on a fast host
    started = docker("run", "-d", "--user", user, "-v", f"{work}:/data", image, "score", *FIXTURE_ARGS,
                     "--batch-size", "1", "--metrics", "all", "-o", "report")
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        for _ in range(100):  # running: bpnet-eval has started and handles SIGTERM (bit 15 of PID 1's SigCgt)
            status = docker("exec", container, "cat", "/proc/1/status").stdout
            caught = int(next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0"), 16)
            if caught & (1 << (15 - 1)):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        begin = time.monotonic()
        stopped = docker("stop", container)
        took = time.monotonic() - begin
        assert stopped.returncode == 0, stopped.stderr
        state = docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip()
        logs = docker("logs", container).stderr
    finally:
        docker("rm", "-f", container)
    assert took < 2, f"docker stop took {took:.1f} s: {logs}"
    assert state == "130", logs
    assert "bpnet-eval: error: interrupted; no report was written" in logs.splitlines() and "Traceback" not in logs
    assert sorted(p.name for p in work.iterdir()) == sorted(FIXTURE_ARGS)  # no report, no leftovers
