"""The runtime requirements a commit's build declares: setup.py's rules read as data, applied per
target device and CUDA major."""

from __future__ import annotations

import textwrap

import pytest

from vllm_lock import requirements as req
from vllm_lock import source_layout as layout
from vllm_lock.source_layout import LayoutError

SETUP_PY = textwrap.dedent('''
    import torch

    def get_requirements() -> list[str]:
        """Get Python package dependencies from requirements.txt."""

        def _read_requirements(filename: str) -> list[str]:
            ...

        if _no_device():
            requirements = _read_requirements("common.txt")
        elif _is_cuda():
            requirements = _read_requirements("cuda.txt")
            cuda_major, cuda_minor = torch.version.cuda.split(".")
            modified_requirements = []
            for req in requirements:
                if "vllm-flash-attn" in req and cuda_major != "12":
                    continue
                if "flashinfer-cubin" in req or "flashinfer-jit-cache" in req:
                    # not on PyPI
                    continue
                if "nvidia-cutlass-dsl[cu13]" in req and cuda_major == "12":
                    req = req.replace("nvidia-cutlass-dsl[cu13]", "nvidia-cutlass-dsl")
                if "humming-kernels[cu13]" in req and cuda_major == "12":
                    req = req.replace("humming-kernels[cu13]", "humming-kernels[cu12]")
                modified_requirements.append(req)
            requirements = modified_requirements
        elif _is_hip():
            requirements = _read_requirements("rocm.txt")
            if "develop" in sys.argv[1:]:
                _check_requirements_preinstalled(requirements)
            requirements += get_rocm_device_requirements()
        elif _is_cpu():
            requirements = _read_requirements("cpu.txt")
        else:
            raise ValueError("Unsupported platform")
        return requirements
''')

FILES = {
    "requirements/common.txt": "# common\nregex\nfilelock >= 3.16.1 # locking\n\nnumpy\n",
    "requirements/cuda.txt": textwrap.dedent("""\
        -r common.txt
        --extra-index-url https://flashinfer.ai/whl/
        vllm-flash-attn==2.6.2
        flashinfer-python==0.7.2
        flashinfer-cubin==0.7.2
        flashinfer-jit-cache==0.7.2
        nvidia-cutlass-dsl[cu13]==4.8.0
        humming-kernels[cu13]==0.1.19
        tilelang==0.1.12
        apache-tvm-ffi==0.1.11  # like flashinfer-cubin: setup.py matches the raw line, comment included
        """),
    "requirements/cpu.txt": "-r common.txt\nintel-openmp==2024.2.1; platform_machine == \"x86_64\"\n",
    "requirements/rocm.txt": "-r common.txt\n",
}


def read(path: str) -> str:
    if path not in FILES:
        raise LayoutError(f"{path} is missing")
    return FILES[path]


def test_rules_are_read_from_setup_py_as_data() -> None:
    rules = req.read_rules(SETUP_PY)
    assert rules.from_setup_py
    assert dict(rules.files) == {"empty": "common.txt", "cuda": "cuda.txt", "rocm": "rocm.txt", "cpu": "cpu.txt"}
    assert [(r.contains, r.cuda_major, r.replace) for r in rules.cuda_rules] == [
        (("vllm-flash-attn",), ("!=", "12"), None),
        (("flashinfer-cubin", "flashinfer-jit-cache"), None, None),
        (("nvidia-cutlass-dsl[cu13]",), ("==", "12"), ("nvidia-cutlass-dsl[cu13]", "nvidia-cutlass-dsl")),
        (("humming-kernels[cu13]",), ("==", "12"), ("humming-kernels[cu13]", "humming-kernels[cu12]")),
    ]
    # ROCm adds device packages this tool does not model: an error only when rocm is locked
    assert [(d, s) for d, _, s in rules.unmodelled] == [("rocm", "requirements += get_rocm_device_requirements()")]


COMMON = ["regex", "filelock>=3.16.1", "numpy"]


@pytest.mark.parametrize(
    ("device", "major", "expected"),
    [
        ("empty", None, COMMON),
        ("cpu", None, [*COMMON, 'intel-openmp==2024.2.1; platform_machine == "x86_64"']),
        # CUDA 12: cutlass-dsl loses its extra, humming-kernels becomes [cu12], flashinfer cubins dropped
        # (and apache-tvm-ffi, whose comment mentions flashinfer-cubin: setup.py tests the raw line)
        ("cuda", 12, [*COMMON, "vllm-flash-attn==2.6.2", "flashinfer-python==0.7.2", "nvidia-cutlass-dsl==4.8.0",
                      "humming-kernels[cu12]==0.1.19", "tilelang==0.1.12"]),
        # CUDA 13: vllm-flash-attn dropped, the [cu13] extras kept
        ("cuda", 13, [*COMMON, "flashinfer-python==0.7.2", "nvidia-cutlass-dsl[cu13]==4.8.0",
                      "humming-kernels[cu13]==0.1.19", "tilelang==0.1.12"]),
    ],
)
def test_declared_set_per_device_and_cuda_major(device: str, major: int | None, expected: list[str]) -> None:
    declared = req.declared_requirements(req.read_rules(SETUP_PY), read, target_device=device, cuda_major=major)
    assert list(declared.requirements) == expected
    assert declared.file == f"requirements/{dict(req.read_rules(SETUP_PY).files)[device]}"
    assert declared.files_read[-1] == "requirements/common.txt"


def test_dropped_and_rewritten_lines_are_reported_as_written() -> None:
    declared = req.declared_requirements(req.read_rules(SETUP_PY), read, target_device="cuda", cuda_major=12)
    assert declared.dropped == ("flashinfer-cubin==0.7.2", "flashinfer-jit-cache==0.7.2",
                                "apache-tvm-ffi==0.1.11  # like flashinfer-cubin: setup.py matches the raw line, "
                                "comment included")
    assert declared.rewritten == (("nvidia-cutlass-dsl[cu13]==4.8.0", "nvidia-cutlass-dsl==4.8.0"),
                                  ("humming-kernels[cu13]==0.1.19", "humming-kernels[cu12]==0.1.19"))


def test_a_setup_py_without_the_rules_applies_none() -> None:
    lines = SETUP_PY.splitlines()
    start = next(i for i, line in enumerate(lines) if '"flashinfer-cubin" in req' in line)
    older = "\n".join(lines[:start] + lines[start + 3:])  # 0.20-style: no flashinfer rule
    assert len(req.read_rules(older).cuda_rules) == 3
    declared = req.declared_requirements(req.read_rules(older), read, target_device="cuda", cuda_major=12)
    assert "flashinfer-cubin==0.7.2" in declared.requirements


def test_a_tree_whose_setup_py_has_no_get_requirements_reads_one_file_per_device() -> None:
    rules = req.read_rules("from setuptools import setup\nsetup()\n")
    assert not rules.from_setup_py and rules == req.read_rules(None)
    declared = req.declared_requirements(rules, read, target_device="cuda", cuda_major=12)
    assert "flashinfer-cubin==0.7.2" in declared.requirements  # no rules
    assert req.declared_requirements(rules, read, target_device="empty", cuda_major=None).requirements == tuple(COMMON)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ('if "vllm-flash-attn" in req and cuda_major != "12":',
         'if "vllm-flash-attn" in req and torch.version.hip:'),
        ("req = req.replace(\"humming-kernels[cu13]\", \"humming-kernels[cu12]\")",
         "req = req.upper()"),
        ("modified_requirements.append(req)",
         "print(req)\n            if req:\n                pass\n            else:\n                pass"),
    ],
)
def test_a_rule_this_tool_cannot_read_names_setup_py_and_its_line(change: str, message: str) -> None:
    with pytest.raises(LayoutError, match=r"^setup\.py:\d+: a requirement rule"):
        req.read_rules(SETUP_PY.replace(change, message))


def test_locking_a_device_whose_branch_is_not_modelled_is_an_error() -> None:
    with pytest.raises(LayoutError, match=r"setup\.py:\d+: get_requirements changes the rocm set"):
        req.declared_requirements(req.read_rules(SETUP_PY), read, target_device="rocm", cuda_major=None)
    with pytest.raises(LayoutError, match="no runtime requirements for target device 'tpu'"):
        req.declared_requirements(req.read_rules(SETUP_PY), read, target_device="tpu", cuda_major=None)


def test_includes_are_relative_to_requirements_and_bad_lines_are_named() -> None:
    files = {"requirements/cuda.txt": "-r common.txt\nok\n", "requirements/common.txt": "-r cuda.txt\n"}
    with pytest.raises(LayoutError, match="include cycle"):
        req.declared_requirements(req.DEFAULT_RULES, files.__getitem__, target_device="cuda", cuda_major=12)
    files = {"requirements/cuda.txt": "fine\nthis is not a requirement\n"}
    with pytest.raises(LayoutError, match=r"requirements/cuda\.txt:2"):
        req.declared_requirements(req.DEFAULT_RULES, files.__getitem__, target_device="cuda", cuda_major=12)


# ---------------------------------------------------------------- the build requirement file per target

OLD_TREE = ("requirements/build.txt", "requirements/common.txt", "requirements/cuda.txt", "requirements/cpu.txt")
CPU_BUILD_TREE = (*OLD_TREE, "requirements/cpu-build.txt", "requirements/rocm-build.txt")
PER_DEVICE_TREE = ("requirements/build/cuda.txt", "requirements/build/cpu.txt", "requirements/build/rocm.txt",
                   "requirements/build/tpu.txt", "requirements/common.txt")


@pytest.mark.parametrize(("tree", "device", "expected"), [
    (OLD_TREE, "cuda", "requirements/build.txt"),
    (OLD_TREE, "cpu", "requirements/build.txt"),  # no CPU file yet: the general one
    (OLD_TREE, "empty", "requirements/build.txt"),
    (CPU_BUILD_TREE, "cpu", "requirements/cpu-build.txt"),
    (CPU_BUILD_TREE, "rocm", "requirements/rocm-build.txt"),
    (CPU_BUILD_TREE, "cuda", "requirements/build.txt"),
    (CPU_BUILD_TREE, "tpu", "requirements/build.txt"),
    (PER_DEVICE_TREE, "cpu", "requirements/build/cpu.txt"),
    (PER_DEVICE_TREE, "rocm", "requirements/build/rocm.txt"),
    (PER_DEVICE_TREE, "tpu", "requirements/build/tpu.txt"),
    (PER_DEVICE_TREE, "cuda", "requirements/build/cuda.txt"),
    (PER_DEVICE_TREE, "xpu", "requirements/build/cuda.txt"),  # no file of its own in any layout
    (PER_DEVICE_TREE, "empty", "requirements/build/cuda.txt"),  # compiles nothing: what pyproject mirrors
    # a newer layout wins over an older file left beside it
    ((*PER_DEVICE_TREE, "requirements/cpu-build.txt", "requirements/build.txt"), "cpu", "requirements/build/cpu.txt"),
])
def test_build_requirement_file_per_target_and_layout(tree: tuple[str, ...], device: str, expected: str) -> None:
    assert layout.build_requirements_file(tree, device) == expected
    files = dict.fromkeys((*tree, "tools/use_existing_torch.py"), "")
    assert layout.detect_layout(files, files.__getitem__, target_device=device).build_requirements == expected


def test_no_build_file_names_what_was_looked_for() -> None:
    with pytest.raises(LayoutError, match="no build requirements for target device cpu .requirements/build/cpu.txt, "
                                          "requirements/cpu-build.txt, requirements/build/cuda.txt or "
                                          "requirements/build.txt."):
        layout.build_requirements_file(["requirements/common.txt"], "cpu")
