"""Which CUDA variant can build which GPU architecture. Pure."""

from __future__ import annotations

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
        return f"sm_{key.replace('.', '')} needs CUDA >= {minimum[0]}.{minimum[1]}, the variant is CUDA {cuda[0]}.{cuda[1]}"
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
