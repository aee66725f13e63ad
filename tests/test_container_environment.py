"""The CPUs and memory a container or a cluster job was given, read from fake cgroup trees (cgroup v1 and v2).

``docker run --cpus 1`` sets the quota of the container's cgroup; inside the container that cgroup is the root
of the mount while ``/proc/self/cgroup`` still names its host path (``/docker/<id>``). A cluster job sees its
whole path, and a limit on any ancestor binds it too.
"""

import os

import pytest

from bpnet_eval.environment import (allotted_cpus, cgroup_cpu_quota, cgroup_dirs, cpu_quota_files,
                                    memory_limit_bytes, read_cpu_quota)


def tree(root, files: dict):
    """Write ``{relative path: text}`` under ``root``."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def proc_cgroup(tmp_path, text: str) -> str:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return str(path)


DOCKER_V1 = "".join(f"{i}:{c}:/docker/0123abcd\n" for i, c in
                    enumerate(["cpu,cpuacct", "cpuset", "memory", "pids", "name=systemd"], 1)) + "0::/docker/0123abcd\n"


def test_docker_on_cgroup_v1_reads_the_mount_root(tmp_path):
    """--cpus 1 on a cgroup v1 host: cpu.cfs_quota_us 100000 / period 100000 at the root of the cpu,cpuacct mount."""
    root = tmp_path / "cgroup"
    tree(root, {"cpu,cpuacct/cpu.cfs_quota_us": "100000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
                "memory/memory.limit_in_bytes": "536870912\n"})
    (root / "cpu").symlink_to("cpu,cpuacct")
    proc = proc_cgroup(tmp_path, DOCKER_V1)
    assert cgroup_dirs("cpu", proc, str(root)) == [str(root / "cpu,cpuacct"), str(root / "cpu"), str(root)]
    assert cgroup_cpu_quota(cpu_quota_files(proc, str(root))) == 1
    assert allotted_cpus({}, quota_files=cpu_quota_files(proc, str(root))) == 1
    assert memory_limit_bytes(proc, str(root)) == 512 << 20


@pytest.mark.parametrize("quota, period, expected", [("-1", "100000", None), ("250000", "100000", 3),
                                                     ("50000", "100000", 1), ("x", "100000", None)])
def test_cgroup_v1_quota_over_period_rounded_up(tmp_path, quota, period, expected):
    (tmp_path / "cpu.cfs_quota_us").write_text(quota + "\n")
    (tmp_path / "cpu.cfs_period_us").write_text(period + "\n")
    assert read_cpu_quota(str(tmp_path / "cpu.cfs_quota_us")) == expected


def test_cgroup_v2_job_the_smallest_quota_on_the_path_binds(tmp_path):
    """A SLURM/systemd job on cgroup v2: quota 4 CPUs on the job, 2 on its parent slice, none on the step."""
    root = tmp_path / "cgroup"
    tree(root, {"cpu.max": "max 100000\n",  # a real root has none; the unlimited value is read as no quota
                "slice/cpu.max": "200000 100000\n", "slice/job/cpu.max": "400000 100000\n",
                "slice/job/step/cpu.max": "max 100000\n",
                "slice/memory.max": "max\n", "slice/job/memory.max": "1073741824\n"})
    proc = proc_cgroup(tmp_path, "0::/slice/job/step\n")
    step = root / "slice" / "job" / "step"
    assert cgroup_dirs("cpu", proc, str(root)) == [str(step), str(step.parent), str(step.parent.parent), str(root)]
    assert cgroup_cpu_quota(cpu_quota_files(proc, str(root))) == 2
    assert memory_limit_bytes(proc, str(root)) == 1 << 30


def test_no_cgroup_information_means_no_quota(tmp_path):
    missing = str(tmp_path / "absent")
    assert cgroup_dirs("cpu", missing, str(tmp_path)) == []
    assert cgroup_cpu_quota(cpu_quota_files(missing, str(tmp_path))) is None
    assert allotted_cpus({}, quota_files=()) == len(os.sched_getaffinity(0))


def test_auto_says_in_one_line_when_a_cuda_build_finds_no_gpu(monkeypatch, capsys):
    """The CUDA image on a node whose driver is too old: torch warns and reports no GPU; auto says so, once."""
    import warnings

    import torch

    from bpnet_eval.compute import resolve_device

    def too_old():
        warnings.warn("CUDA initialization: The NVIDIA driver on your system is too old (found version 11040). "
                      "Please update your GPU driver.")
        return False

    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setattr(torch.cuda, "is_available", too_old)
    assert resolve_device("auto") == torch.device("cpu")
    assert capsys.readouterr().err.splitlines() == [
        "bpnet-eval: note: --device auto: this torch is a CUDA 12.6 build but no GPU is usable (CUDA initialization: "
        "The NVIDIA driver on your system is too old (found version 11040)); scoring on the CPU"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert "torch sees no GPU; in a container pass one: docker run --gpus all" in capsys.readouterr().err
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU build: no GPU was expected, nothing to say
    assert resolve_device("auto") == torch.device("cpu")
    assert capsys.readouterr().err == ""


def test_docker_constraints_pin_every_dependency_the_image_installs():
    """docker/constraints.txt (``docker/fetch-wheels.sh --lock``) pins each runtime dependency, the plots extra and
    the build backend at a version they accept: a new dependency without a new lock would break the offline build."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from tests.support.cli import REPO

    pins = {}
    for line in (REPO / "docker" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = (project["project"]["dependencies"] + project["project"]["optional-dependencies"]["plots"]
              + project["build-system"]["requires"])
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in docker/constraints.txt: run docker/fetch-wheels.sh --lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} does not satisfy {requirement}"
