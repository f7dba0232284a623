"""Which CUDA variant can build which GPU architecture; which GPUs and drivers run a build. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The first CUDA release whose nvcc can generate code for each arch (vllm-build-facts.md, section 6).
MIN_CUDA_FOR_ARCH: dict[str, tuple[int, int]] = {
    "7.0": (10, 0),
    "7.5": (10, 0),
    "8.0": (11, 0),
    "8.6": (11, 1),
    "8.7": (11, 4),
    "8.9": (11, 8),
    "9.0": (11, 8),
    "10.0": (12, 8),
    "10.1": (12, 8),
    "10.3": (12, 8),
    "11.0": (13, 0),
    "12.0": (12, 8),
    "12.1": (12, 8),
}
# CUDA 13 dropped code generation for these.
MAX_CUDA_FOR_ARCH: dict[str, tuple[int, int]] = {"7.0": (12, 9)}


def base_arch(arch: str) -> str:
    return arch.rstrip("af")


def arch_problem(arch: str, cuda: tuple[int, int]) -> str | None:
    """Why CUDA `cuda` cannot build `arch`, or None when it can."""
    key = base_arch(arch)
    minimum = MIN_CUDA_FOR_ARCH.get(key)
    if minimum is None:
        return f"unknown CUDA architecture {arch!r} (known: {', '.join(MIN_CUDA_FOR_ARCH)})"
    if cuda < minimum:
        return (f"sm_{key.replace('.', '')} needs CUDA >= {minimum[0]}.{minimum[1]}, the variant is CUDA "
                f"{cuda[0]}.{cuda[1]}")
    maximum = MAX_CUDA_FOR_ARCH.get(key)
    if maximum is not None and cuda > maximum:
        return f"CUDA {cuda[0]}.{cuda[1]} can no longer build sm_{key.replace('.', '')}"
    return None


def sm_name(arch: str) -> str:
    """'12.0' -> 'sm_120' (the name cuobjdump prints)."""
    return "sm_" + base_arch(arch).replace(".", "")


def parse_variant(cuda: str) -> tuple[int, int]:
    """'cu128' -> (12, 8)."""
    digits = cuda.removeprefix("cu")
    if not digits.isdigit() or len(digits) < 3:
        raise ValueError(f"CUDA variant {cuda!r} is not like cu128")
    return int(digits[:-1]), int(digits[-1])


# ---------------------------------------------------------------- the GPUs a build is for
#
# Coverage rule: a GPU of compute capability X.Y runs a build when one locked arch P.Q[a|f] has
#   P == X and Q == Y            (the exact arch, any suffix), or
#   P == X and Q <  Y, no `a`    (CUDA binary compatibility: sm_PQ cubins, and sm_PQf family code,
#                                 run on later minors of the same major; vLLM's own release wheels
#                                 rely on it: they list neither 8.6 nor 12.1, which run sm_80 and
#                                 sm_120 code).
# Arch-specific code (`X.Ya`) runs only on exactly X.Y. Nothing covers another major: vLLM drops
# `+PTX`, so there is no PTX for the driver to compile forward. A GPU covered only by an older
# minor gets a note: kernels vLLM compiles only for its exact arch are not in the build.


@dataclass(frozen=True, kw_only=True, slots=True)
class Gpu:
    name: str
    capability: tuple[int, int]


@dataclass(frozen=True, kw_only=True, slots=True)
class GpuReport:
    """What nvidia-smi said about this machine. `gpus` empty and `error` None: no GPU present
    (no nvidia-smi, no driver, or it lists none), which `absent` explains."""

    gpus: tuple[Gpu, ...] = ()
    driver_version: str | None = None
    driver_cuda: tuple[int, int] | None = None  # the newest CUDA the driver supports
    absent: str | None = None  # why no GPU is present
    error: str | None = None  # nvidia-smi ran and said something unreadable


def arch_covers(arch: str, capability: tuple[int, int]) -> bool:
    """Whether code built for `arch` runs on a GPU of `capability` (the rule above)."""
    major, minor = (int(part) for part in base_arch(arch).split("."))
    if arch.endswith("a"):
        return capability == (major, minor)
    return capability[0] == major and capability[1] >= minor


def coverage_problem(capability: tuple[int, int], archs: tuple[str, ...], gpu_name: str = "the GPU") -> str | None:
    """Why a GPU of `capability` is not covered by the locked archs, or None when it is."""
    if any(arch_covers(arch, capability) for arch in archs):
        return None
    cap = f"{capability[0]}.{capability[1]}"
    return (
        f"{gpu_name} has compute capability {cap} (sm_{capability[0]}{capability[1]}), which the locked "
        f"archs {', '.join(archs)} do not cover: this build cannot run on this machine "
        f"(re-resolve with --arch {cap})"
    )


def coverage_note(capability: tuple[int, int], archs: tuple[str, ...], gpu_name: str) -> str | None:
    """A note when the GPU runs only an older minor's code (binary compatibility), else None."""
    exact = any(tuple(int(p) for p in base_arch(a).split(".")) == capability for a in archs)
    if exact or coverage_problem(capability, archs) is not None:
        return None
    cap = f"{capability[0]}.{capability[1]}"
    return (f"{gpu_name} (sm_{capability[0]}{capability[1]}) runs code built for an older {capability[0]}.x arch; "
            f"kernels vLLM builds only for sm_{capability[0]}{capability[1]} need --arch {cap}")


# The oldest Linux driver of each CUDA release (CUDA Toolkit release notes, "Toolkit Driver Version").
MIN_DRIVER_FOR_CUDA: dict[tuple[int, int], str] = {
    (11, 8): "520.61.05",
    (12, 0): "525.60.13",
    (12, 1): "530.30.02",
    (12, 2): "535.54.03",
    (12, 3): "545.23.06",
    (12, 4): "550.54.14",
    (12, 5): "555.42.02",
    (12, 6): "560.28.03",
    (12, 8): "570.26",
    (12, 9): "575.51.03",
    (13, 0): "580.65.06",
}


def _cuda_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def driver_problem(driver_cuda: tuple[int, int], driver_version: str | None, cuda_variant: str,
                   nvcc: tuple[int, int] | None = None) -> str | None:
    """Why this driver cannot run a build of `cuda_variant` torch (compiled by `nvcc`), or None.

    The driver must support the torch variant's CUDA (cu128: 12.8); and code nvcc compiles for a
    newer CUDA major does not load on an older major's driver."""
    try:
        needed = parse_variant(cuda_variant)
    except ValueError:
        return None  # a CPU torch: no driver needed
    why = f"the lock's torch is {cuda_variant}"
    if nvcc is not None and nvcc[0] > needed[0]:
        needed, why = nvcc, f"nvcc {_cuda_text(nvcc)} compiles vLLM's kernels"
    if needed <= driver_cuda:
        return None
    driver = f"driver {driver_version}" if driver_version else "the driver"
    minimum = MIN_DRIVER_FOR_CUDA.get(needed)
    fit = f"a driver for CUDA >= {_cuda_text(needed)}" + (f" ({minimum} or newer)" if minimum else "")
    return f"{driver} supports CUDA up to {_cuda_text(driver_cuda)}, but {why}: install {fit}"


def gpu_problems(report: GpuReport, archs: tuple[str, ...], cuda_variant: str,
                 nvcc: tuple[int, int] | None = None) -> list[str]:
    """Every reason the GPUs of this machine cannot run a CUDA build of `archs`; empty when they
    can or when no GPU is present (the caller warns)."""
    if report.error is not None:
        return [f"cannot read this machine's GPUs: {report.error} (pass --skip-gpu-check on a host that "
                "builds for other machines)"]
    problems: list[str] = []
    uncovered = [g for g in report.gpus if coverage_problem(g.capability, archs) is not None]
    if uncovered:
        found = ", ".join(f"{g.name} (sm_{g.capability[0]}{g.capability[1]})" for g in uncovered)
        fits = sorted({_cuda_text(g.capability) for g in uncovered})
        problems.append(f"the locked archs {', '.join(archs)} do not cover {found}: the build would fail at run "
                        f"time (no kernel image); re-resolve with {' '.join(f'--arch {a}' for a in fits)}")
    if report.gpus and report.driver_cuda is not None:
        problem = driver_problem(report.driver_cuda, report.driver_version, cuda_variant, nvcc)
        if problem:
            problems.append(problem)
    elif report.gpus:
        problems.append("nvidia-smi does not say which CUDA version the driver supports (pass --skip-gpu-check "
                        "on a host that builds for other machines)")
    return problems


def gpu_notes(report: GpuReport, archs: tuple[str, ...]) -> list[str]:
    """Warnings that do not refuse: no GPU present, or a GPU covered only by binary compatibility."""
    if report.error is None and not report.gpus:
        return [f"no GPU present ({report.absent or 'nvidia-smi lists none'}): the GPUs this build is for "
                "are not checked"]
    return [note for g in report.gpus if (note := coverage_note(g.capability, archs, g.name))]


# ---------------------------------------------------------------- nvidia-smi output

# a compute capability is at most two digits a part (sm_120 is 12.0), a CUDA version three: more
# digits are not a reading (and 5,000 of them are past int()'s limit)
_CAP = re.compile(r"^(\d{1,2})\.(\d{1,2})$")
_DRIVER_CUDA = re.compile(r"CUDA Version\s*:\s*(\d{1,3})\.(\d{1,3})(?!\d)")
_DRIVER_VERSION = re.compile(r"Driver Version\s*:\s*([0-9][0-9.]*)")
# What nvidia-smi prints when there is no GPU to talk to: no device passed to the container, no
# kernel driver loaded. Those mean "no GPU present", not "cannot read".
NO_GPU_MESSAGES = ("No devices were found", "couldn't communicate with the NVIDIA driver",
                   "No supported GPUs were found")


def parse_gpu_query(output: str) -> tuple[tuple[Gpu, ...], list[str]]:
    """`nvidia-smi --query-gpu=compute_cap,name --format=csv,noheader` -> GPUs, unreadable lines."""
    gpus: list[Gpu] = []
    bad: list[str] = []
    for line in output.splitlines():
        if not line.strip():
            continue
        cap, _, name = (part.strip() for part in line.partition(","))
        match = _CAP.match(cap)
        if match and name:
            gpus.append(Gpu(name=name, capability=(int(match.group(1)), int(match.group(2)))))
        else:
            bad.append(line.strip())
    return tuple(gpus), bad


def parse_driver(output: str) -> tuple[str | None, tuple[int, int] | None]:
    """`nvidia-smi`'s banner -> (driver version, the newest CUDA version the driver supports)."""
    version = _DRIVER_VERSION.search(output)
    cuda = _DRIVER_CUDA.search(output)
    return (version.group(1) if version else None,
            (int(cuda.group(1)), int(cuda.group(2))) if cuda else None)


def gpu_report(query: tuple[int, str] | None, banner: tuple[int, str] | None) -> GpuReport:
    """The two nvidia-smi runs ((exit status, output), None when nvidia-smi is not installed) ->
    what they say. Pure, so that it is tested on real nvidia-smi output."""
    if query is None:
        return GpuReport(absent="no nvidia-smi on PATH")
    status, output = query
    no_gpu = next((m for m in NO_GPU_MESSAGES if m in output), None)
    if no_gpu is not None:
        return GpuReport(absent=f"nvidia-smi: {no_gpu}")
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    if status != 0:
        return GpuReport(error=f"nvidia-smi --query-gpu exited {status}: {last[:200] or 'no output'}")
    gpus, bad = parse_gpu_query(output)
    if bad:
        return GpuReport(error=f"unreadable nvidia-smi line {bad[0][:200]!r}")
    if not gpus:
        return GpuReport(absent="nvidia-smi lists none")
    driver_version, driver_cuda = parse_driver(banner[1]) if banner is not None and banner[0] == 0 else (None, None)
    return GpuReport(gpus=gpus, driver_version=driver_version, driver_cuda=driver_cuda)
