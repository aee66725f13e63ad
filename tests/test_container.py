"""Container conditions: a non-root user, a read-only install, no writable HOME, caches in /tmp.

``test_readonly_install_as_another_user`` reproduces them directly (needs root to switch users);
``test_docker_image_builds_and_scores`` builds the top-level Dockerfile and runs the image like
Apptainer would (``--user``, ``--read-only``, ``--tmpfs /tmp``); it skips when no Docker daemon answers.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
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


@pytest.mark.skipif(docker_ready() is not None, reason=f"Docker image not built: {docker_ready()}")
def test_docker_image_builds_and_scores(tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, context / name)
    shutil.copytree(REPO / "bpnet_eval", context / "bpnet_eval", ignore=shutil.ignore_patterns("__pycache__"))
    local = context / "docker" / "local"
    local.mkdir(parents=True)
    for wheel in Path("/opt/wheels").glob("torch-*.whl"):  # offline machines keep a torch wheel here
        os.link(wheel, local / wheel.name) if wheel.stat().st_dev == local.stat().st_dev else shutil.copy(wheel, local)
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.exists():
        shutil.copy(bundle, local / "ca.crt")
    tag = "bpnet-eval:pytest"
    build = subprocess.run(["docker", "build", "--network", "host", "--build-arg", f"BASE={docker_base()}", "-t", tag,
                            str(context)], capture_output=True, text=True, timeout=1800)
    if build.returncode != 0:
        pytest.skip(f"docker build failed here (network or base image?): {build.stderr.strip().splitlines()[-1:]}")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    run = ["docker", "run", "--rm", "--user", "1000:1000", "--read-only", "--tmpfs", "/tmp", "-e", "HOME=/nonexistent",
           "-v", f"{FIXTURE}:/data:ro", "-v", f"{out}:/out", tag]
    result = subprocess.run(run + ["score", *(f"/data/{f}" for f in FIXTURE_ARGS), "-o", "/out/report", "-q"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    same_numbers(json.loads((out / "report" / "summary.json").read_text()), host_report(tmp_path))
    bad = subprocess.run(run + ["score", "/data/predictions.h5", "/data/nope.bw", "/data/observed.minus.bw", "-o",
                                "/out/bad", "-q"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 3 and bad.stderr.strip().splitlines() == [
        "bpnet-eval: error: /data/nope.bw: cannot open bigWig file (No such file or directory); check the path and "
        "its read permission"]
    assert not (out / "bad").exists()
