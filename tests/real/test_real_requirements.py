"""vLLM's own release sources (PyPI sdists, downloaded once and cached): the runtime requirements
each build declares per target and CUDA major, and the torch family taken from the commit. The
real stripping script runs on each tree. Every expected value below was written by hand from
reading that version's requirements/*.txt and setup.py (get_requirements), never produced by the
code under test."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from sdists import sdist

from vllm_lock import requirements as requirement_rules
from vllm_lock import source_layout as layout
from vllm_lock import torch_family
from vllm_lock.actions.resolve import ResolveRequest
from vllm_lock.actions.resolve.source import StrippedTree, strip_and_read
from vllm_lock.model import Target
from vllm_lock.progress import QUIET

VERSIONS = ("0.8.5.post1", "0.11.2", "0.20.2", "0.30.0", "0.33.0")
# What PyTorch's index carries, as far as these files name it (numpy: one of its mirrored copies)
TORCH_INDEX = {"torch", "torchvision", "torchaudio", "torchcodec", "triton", "pytorch-triton", "numpy"}
X86_64 = torch_family.target_environment(Target(python="3.12", platform="x86_64-manylinux_2_39"))

# requirements/common.txt of each version, comments removed (every target includes it first)
COMMON = {
    "0.8.5.post1": """\
cachetools
psutil
sentencepiece
numpy
requests >= 2.26.0
tqdm
blake3
py-cpuinfo
transformers >= 4.51.1
huggingface-hub[hf_xet] >= 0.30.0
tokenizers >= 0.21.1
protobuf
fastapi[standard] >= 0.115.0
aiohttp
openai >= 1.52.0
pydantic >= 2.9
prometheus_client >= 0.18.0
pillow
prometheus-fastapi-instrumentator >= 7.0.0
tiktoken >= 0.6.0
lm-format-enforcer >= 0.10.11, < 0.11
llguidance >= 0.7.9, < 0.8.0; platform_machine == "x86_64" or platform_machine == "arm64" or platform_machine == "aarch64"
outlines == 0.1.11
lark == 1.2.2
xgrammar == 0.1.18; platform_machine == "x86_64" or platform_machine == "aarch64"
typing_extensions >= 4.10
filelock >= 3.16.1
partial-json-parser
pyzmq >= 25.0.0
msgspec
gguf >= 0.13.0
importlib_metadata
mistral_common[opencv] >= 1.5.4
opencv-python-headless >= 4.11.0
pyyaml
six>=1.16.0; python_version > '3.11'
setuptools>=74.1.1; python_version > '3.11'
einops
compressed-tensors == 0.9.3
depyf==0.18.0
cloudpickle
watchfiles
python-json-logger
scipy
ninja
opentelemetry-sdk>=1.26.0,<1.27.0
opentelemetry-api>=1.26.0,<1.27.0
opentelemetry-exporter-otlp>=1.26.0,<1.27.0
opentelemetry-semantic-conventions-ai>=0.4.1,<0.5.0
""",  # noqa: E501 (vLLM's requirement lines, verbatim)
    "0.11.2": """\
regex
cachetools
psutil
sentencepiece
numpy
requests >= 2.26.0
tqdm
blake3
py-cpuinfo
transformers >= 4.56.0, < 5
tokenizers >= 0.21.1
protobuf
fastapi[standard] >= 0.115.0
aiohttp
openai >= 1.99.1
pydantic >= 2.12.0
prometheus_client >= 0.18.0
pillow
prometheus-fastapi-instrumentator >= 7.0.0
tiktoken >= 0.6.0
lm-format-enforcer == 0.11.3
llguidance >= 1.3.0, < 1.4.0; platform_machine == "x86_64" or platform_machine == "arm64" or platform_machine == "aarch64" or platform_machine == "s390x"
outlines_core == 0.2.11
diskcache == 5.6.3
lark == 1.2.2
xgrammar == 0.1.25; platform_machine == "x86_64" or platform_machine == "aarch64" or platform_machine == "arm64" or platform_machine == "s390x"
typing_extensions >= 4.10
filelock >= 3.16.1
partial-json-parser
pyzmq >= 25.0.0
msgspec
gguf >= 0.13.0
mistral_common[image] >= 1.8.5
opencv-python-headless >= 4.11.0
pyyaml
six>=1.16.0; python_version > '3.11'
setuptools>=77.0.3,<81.0.0; python_version > '3.11'
einops
compressed-tensors == 0.12.2
depyf==0.20.0
cloudpickle
watchfiles
python-json-logger
scipy
ninja
pybase64
cbor2
setproctitle
openai-harmony >= 0.0.3
anthropic == 0.71.0
model-hosting-container-standards < 1.0.0
""",  # noqa: E501 (vLLM's requirement lines, verbatim)
    "0.20.2": """\
regex
cachetools
psutil
sentencepiece
numpy
requests >= 2.26.0
tqdm
blake3
py-cpuinfo
transformers >= 4.56.0, != 5.0.*, != 5.1.*, != 5.2.*, != 5.3.*, != 5.4.*, != 5.5.0
tokenizers >= 0.21.1
protobuf >= 5.29.6, !=6.30.*, !=6.31.*, !=6.32.*, !=6.33.0.*, !=6.33.1.*, !=6.33.2.*, !=6.33.3.*, !=6.33.4.*
fastapi[standard] >= 0.115.0
aiohttp >= 3.13.3
openai >= 2.0.0
pydantic >= 2.12.0
prometheus_client >= 0.18.0
pillow
prometheus-fastapi-instrumentator >= 7.0.0
tiktoken >= 0.6.0
lm-format-enforcer == 0.11.3
llguidance >= 1.3.0, < 1.4.0; platform_machine == "x86_64" or platform_machine == "arm64" or platform_machine == "aarch64" or platform_machine == "ppc64le"
outlines_core == 0.2.14
diskcache == 5.6.3
lark == 1.2.2
xgrammar >= 0.1.32, < 1.0.0; platform_machine == "x86_64" or platform_machine == "aarch64" or platform_machine == "arm64" or platform_machine == "s390x" or platform_machine == "ppc64le"
typing_extensions >= 4.10
filelock >= 3.16.1
partial-json-parser
pyzmq >= 25.0.0
msgspec
gguf >= 0.17.0
mistral_common[image] >= 1.11.0
opencv-python-headless >= 4.13.0
pyyaml
six>=1.16.0; python_version > '3.11'
setuptools>=77.0.3,<81.0.0; python_version > '3.11'
einops
compressed-tensors == 0.15.0.1
depyf==0.20.0
cloudpickle
watchfiles
python-json-logger
ninja
pybase64
cbor2
ijson
setproctitle
openai-harmony >= 0.0.3
anthropic >= 0.71.0
model-hosting-container-standards >= 0.1.13, < 1.0.0
mcp
opentelemetry-sdk >= 1.27.0
opentelemetry-api >= 1.27.0
opentelemetry-exporter-otlp >= 1.27.0
opentelemetry-semantic-conventions-ai >= 0.4.1
""",  # noqa: E501 (vLLM's requirement lines, verbatim)
    "0.30.0": """\
regex
cachetools
psutil
sentencepiece
numpy
requests >= 2.26.0
tqdm
blake3
py-cpuinfo
transformers >= 5.10.4
huggingface_hub >= 1.31.0
tokenizers >= 0.21.1
safetensors >= 0.6.2
protobuf >= 5.29.6, !=6.30.*, !=6.31.*, !=6.32.*, !=6.33.0.*, !=6.33.1.*, !=6.33.2.*, !=6.33.3.*, !=6.33.4.*
fastapi[standard] >= 0.133.0, < 0.137.0
starlette >= 1.0.1
aiohttp >= 3.13.3
openai >= 2.25.0
pydantic >= 2.12.0
prometheus_client >= 0.18.0
pillow
prometheus-fastapi-instrumentator >= 8.0.0
tiktoken >= 0.6.0
lm-format-enforcer == 0.11.3
llguidance >= 1.7.0, < 1.8.0; platform_machine == "x86_64" or platform_machine == "arm64" or platform_machine == "aarch64" or platform_machine == "ppc64le" or platform_machine == "s390x"
outlines_core == 0.2.14
lark == 1.2.2
xgrammar >= 0.2.1, < 1.0.0; platform_machine == "x86_64" or platform_machine == "aarch64" or platform_machine == "arm64" or platform_machine == "s390x" or platform_machine == "ppc64le"
typing_extensions >= 4.10
filelock >= 3.16.1
partial-json-parser
jsonschema >= 4.23.0
pyzmq >= 25.0.0
msgspec
mistral_common[image] >= 1.11.6
opencv-python-headless >= 4.13.0
pyyaml
six>=1.16.0; python_version > '3.11'
setuptools>=77.0.3,<81.0.0; python_version > '3.11'
einops
compressed-tensors == 0.17.0
depyf==0.20.0
cloudpickle
watchfiles
python-json-logger
ninja
pybase64
cbor2
ijson
setproctitle
openai-harmony >= 0.0.3
anthropic >= 0.71.0
model-hosting-container-standards >= 0.1.14, < 1.0.0
mcp >= 2.0.0, < 3.0.0
opentelemetry-sdk >= 1.27.0
opentelemetry-api >= 1.27.0
opentelemetry-exporter-otlp >= 1.27.0
opentelemetry-semantic-conventions-ai >= 0.4.1
""",  # noqa: E501 (vLLM's requirement lines, verbatim)
    "0.33.0": """\
regex
cachetools
psutil
sentencepiece
numpy
requests >= 2.33.0
certifi >= 2026.10.19
tqdm
blake3
py-cpuinfo
transformers >= 5.16.1, < 5.21.0
huggingface_hub >= 1.31.0
tokenizers >= 0.23.2
safetensors >= 0.6.2
protobuf >= 5.29.6, !=6.30.*, !=6.31.*, !=6.32.*, !=6.33.0.*, !=6.33.1.*, !=6.33.2.*, !=6.33.3.*, !=6.33.4.*; platform_machine != "s390x"
protobuf == 7.36.1; platform_machine == "s390x"
fastapi[standard] >= 0.133.0, < 0.137.0
starlette >= 1.0.1
aiohttp >= 3.14.4
multidict >= 6.9.1
openai >= 2.25.0
pydantic >= 2.12.0
orjson>=3.11.6
prometheus_client >= 0.18.0
pillow >= 13.0.0
prometheus-fastapi-instrumentator >= 8.0.0
tiktoken >= 0.6.0
lm-format-enforcer == 0.11.3
llguidance >= 1.7.0, < 1.8.0; platform_machine == "x86_64" or platform_machine == "arm64" or platform_machine == "aarch64" or platform_machine == "ppc64le" or platform_machine == "s390x"
outlines_core == 0.2.14
lark == 1.2.2
xgrammar == 0.2.8; platform_machine == "x86_64" or platform_machine == "aarch64" or platform_machine == "arm64" or platform_machine == "s390x" or platform_machine == "ppc64le"
typing_extensions >= 4.10
filelock >= 3.20.3
partial-json-parser
jsonschema >= 4.23.0
pyzmq >= 25.0.0
msgspec
mistral_common[image] >= 1.11.6
opencv-python-headless >= 4.13.0
pyyaml
six>=1.16.0; python_version > '3.11'
setuptools>=78.1.1,<81.0.0; python_version > '3.11'
einops
compressed-tensors == 0.17.0
depyf==0.20.0
cloudpickle
watchfiles
python-json-logger
ninja
pybase64
cbor2
ijson
setproctitle
oss-harmony >= 0.0.11
anthropic >= 0.71.0
model-hosting-container-standards >= 0.1.14, < 1.0.0
mcp >= 2.2.0, < 3.0.0
opentelemetry-sdk >= 1.27.0
opentelemetry-api >= 1.27.0
opentelemetry-exporter-otlp >= 1.27.0
opentelemetry-semantic-conventions-ai >= 0.4.1
""",  # noqa: E501 (vLLM's requirement lines, verbatim)
}

# What each target adds after common.txt, as setup.py declares it (stripped files; CUDA rules applied)
CUDA_0_30_0 = """\
numba == 0.65.0
torchcodec >= 0.14
PyNvVideoCodec==2.0.4
flashinfer-python==0.6.18.post1
apache-tvm-ffi==0.1.11
tilelang==0.1.12
nvidia-cudnn-frontend>=1.19.1
nvtx==0.2.15
fastsafetensors >= 0.3.3
instanttensor >= 0.1.9
nvidia-cutlass-dsl{cu13}==4.7.1
quack-kernels==0.6.5
tokenspeed-mla==0.1.8; platform_system == "Linux"
humming-kernels[{cu}]==0.1.12
"""
CUDA_0_33_0 = """\
numba == 0.65.0
torchcodec >= 0.14
PyNvVideoCodec==2.0.4
flashinfer-python==0.7.2.post1
apache-tvm-ffi==0.1.11
tilelang==0.1.12
nvidia-cudnn-frontend>=1.31.0
nvtx==0.2.15
fastsafetensors >= 0.3.3
instanttensor >= 0.2.2
nvidia-cutlass-dsl{cu13}==4.8.0
quack-kernels==0.6.5
tokenspeed-mla==2.0.3; platform_system == "Linux"
humming-kernels[{cu}]==0.1.19
"""
ADDED: dict[tuple[str, str], str] = {
    # default-mode stripping also removed `xformers==0.0.29.post2; ...  # Requires PyTorch 2.6.0`
    ("0.8.5.post1", "cuda"): """\
numba == 0.60.0; python_version == '3.9'
numba == 0.61.2; python_version > '3.9'
ray[cgraph]>=2.43.0, !=2.44.*
""",
    ("0.8.5.post1", "cpu"): """\
datasets
triton==3.2.0; platform_machine == "x86_64"
""",
    ("0.11.2", "cuda"): """\
numba == 0.61.2
ray[cgraph]>=2.48.0
flashinfer-python==0.5.2
""",
    # the triton line's comment mentions torch: default mode removed it (a family member now)
    ("0.11.2", "cpu"): """\
numba == 0.61.2; platform_machine != "s390x"
packaging>=24.2
setuptools>=77.0.3,<81.0.0
datasets
intel-openmp==2024.2.1; platform_machine == "x86_64"
py-cpuinfo; platform_machine == "aarch64"
""",
    # no rule besides vllm-flash-attn (not named here): flashinfer-cubin stays, on CUDA 12 and 13
    ("0.20.2", "cuda"): """\
numba == 0.65.0
flashinfer-python==0.6.8.post1
flashinfer-cubin==0.6.8.post1
apache-tvm-ffi==0.1.9
tilelang==0.1.9
nvidia-cudnn-frontend>=1.13.0,<1.19.0
fastsafetensors >= 0.2.2
nvidia-cutlass-dsl>=4.4.2
quack-kernels>=0.3.3
""",
    ("0.20.2", "cpu"): """\
setuptools==77.0.3
numba == 0.65.0; platform_machine != "s390x"
torchaudio; platform_machine != "s390x" and platform_machine != "riscv64"
torchvision; platform_machine != "s390x"  and platform_machine != "riscv64"
intel-openmp==2024.2.1; platform_machine == "x86_64"
py-cpuinfo; platform_machine == "aarch64"
""",
    # flashinfer-cubin dropped on both; [cu13] extras rewritten on CUDA 12
    ("0.30.0", "cu128"): CUDA_0_30_0.format(cu13="", cu="cu12"),
    ("0.30.0", "cu130"): CUDA_0_30_0.format(cu13="[cu13]", cu="cu13"),
    ("0.30.0", "cpu"): """\
setuptools==77.0.3
numba == 0.65.0; platform_machine != "s390x"
torchaudio; platform_machine != "s390x" and platform_machine != "riscv64"
torchvision; platform_machine != "s390x"  and platform_machine != "riscv64"
torchcodec >= 0.14; platform_machine != "s390x" and platform_machine != "riscv64" and platform_machine != "ppc64le"
intel-openmp==2024.2.1; platform_machine == "x86_64"
py-cpuinfo; platform_machine == "aarch64"
""",
    ("0.33.0", "cu128"): CUDA_0_33_0.format(cu13="", cu="cu12"),
    ("0.33.0", "cu130"): CUDA_0_33_0.format(cu13="[cu13]", cu="cu13"),
    ("0.33.0", "cpu"): """\
setuptools==78.1.1
numba == 0.65.0
torchaudio; platform_machine != "s390x" and platform_machine != "riscv64"
torchvision; platform_machine != "riscv64"
torchcodec >= 0.14; platform_machine != "riscv64" and platform_machine != "ppc64le"
intel-openmp==2024.2.1; platform_machine == "x86_64"
triton @ https://github.com/triton-lang/triton-cpu/releases/download/v3.8.0/triton-3.8.0+cpu-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl ; platform_machine == "x86_64" and python_version == "3.11"
triton @ https://github.com/triton-lang/triton-cpu/releases/download/v3.8.0/triton-3.8.0+cpu-cp312-abi3-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl ; platform_machine == "x86_64" and python_version >= "3.12"
py-cpuinfo; platform_machine == "aarch64"
""",  # noqa: E501 (vLLM's requirement lines, verbatim)
}

Family = list[tuple[str, str, str]]  # name, the commit's pin, where it came from
CUDA_FAMILY: dict[str, Family] = {
    "0.8.5.post1": [("torchaudio", "==2.6.0", "stripped"), ("torchvision", "==0.21.0", "stripped")],
    "0.11.2": [("torchaudio", "==2.9.0", "stripped"), ("torchvision", "==0.24.0", "stripped")],
    "0.20.2": [("torchaudio", "==2.11.0", "stripped"), ("torchvision", "==0.26.0", "stripped")],
    "0.30.0": [("torchaudio", "==2.11.0", "stripped"), ("torchcodec", ">=0.14", "declared"),
               ("torchvision", "==0.28.0", "stripped")],
    # torchaudio stopped following torch (2.14.0) at 2.11.0
    "0.33.0": [("torchaudio", "==2.11.0", "stripped"), ("torchcodec", ">=0.14", "declared"),
               ("torchvision", "==0.29.0", "stripped")],
}
CPU_FAMILY: dict[str, Family] = {
    # `torchaudio; platform_machine != "ppc64le" ...` removed; the ppc64le pins do not apply on x86_64
    "0.8.5.post1": [("torchaudio", "", "stripped"), ("torchvision", "", "stripped")],
    # intel_extension_for_pytorch==2.8.0 is removed too, but the torch index does not carry it
    "0.11.2": [("torchaudio", "", "stripped"), ("torchvision", "", "stripped"), ("triton", "==3.2.0", "stripped")],
    # --prefix keeps the unpinned lines: members the declared set names
    "0.20.2": [("torchaudio", "", "declared"), ("torchvision", "", "declared")],
    "0.30.0": [("torchaudio", "", "declared"), ("torchcodec", ">=0.14", "declared"), ("torchvision", "", "declared")],
    "0.33.0": [("torchaudio", "", "declared"), ("torchcodec", ">=0.14", "declared"), ("torchvision", "", "declared")],
}
NOT_LOCKED = {  # removed by default-mode stripping only because the line mentions torch
    ("0.8.5.post1", "cuda"): ["xformers==0.0.29.post2; platform_system == 'Linux' and platform_machine == 'x86_64'"],
    ("0.11.2", "cuda"): ["xformers==0.0.33.post1; platform_system == 'Linux' and platform_machine == 'x86_64'"],
    ("0.11.2", "cpu"): ['intel_extension_for_pytorch==2.8.0; platform_machine == "x86_64"'],
}
# setup.py's CUDA rules per version: (substrings, CUDA-major condition, replacement)
RULES = {
    "0.8.5.post1": [(("vllm-flash-attn",), ("!=", "12"), None)],
    "0.11.2": [(("vllm-flash-attn",), ("!=", "12"), None)],
    "0.20.2": [(("vllm-flash-attn",), ("!=", "12"), None)],
    "0.30.0": [(("vllm-flash-attn",), ("!=", "12"), None), (("flashinfer-cubin",), None, None),
               (("nvidia-cutlass-dsl[cu13]",), ("==", "12"), ("nvidia-cutlass-dsl[cu13]", "nvidia-cutlass-dsl")),
               (("humming-kernels[cu13]",), ("==", "12"), ("humming-kernels[cu13]", "humming-kernels[cu12]"))],
    "0.33.0": [(("vllm-flash-attn",), ("!=", "12"), None),
               (("flashinfer-cubin", "flashinfer-jit-cache"), None, None),
               (("nvidia-cutlass-dsl[cu13]",), ("==", "12"), ("nvidia-cutlass-dsl[cu13]", "nvidia-cutlass-dsl")),
               (("humming-kernels[cu13]",), ("==", "12"), ("humming-kernels[cu13]", "humming-kernels[cu12]"))],
}
FILE = {"cuda": "requirements/cuda.txt", "cpu": "requirements/cpu.txt", "empty": "requirements/common.txt"}


def _lines(text: str) -> list[str]:
    return [str(Requirement(line)) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each version's setup.py, pyproject.toml, stripping script and requirements/, extracted once."""
    found = {}
    for version in VERSIONS:
        root = tmp_path_factory.mktemp(f"vllm-{version}")
        with tarfile.open(sdist(version)) as archive:
            for member in archive.getmembers():
                relative = member.name.split("/", 1)[1] if "/" in member.name else ""
                if member.isfile() and (relative in ("setup.py", "pyproject.toml", "use_existing_torch.py",
                                                     "tools/use_existing_torch.py")
                                        or relative.startswith("requirements/")):
                    target = root / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    target.write_bytes(extracted.read())
        found[version] = root
    return found


def _read_as_built(trees: dict[str, Path], tmp_path: Path, version: str, device: str, cuda: str
                   ) -> tuple[requirement_rules.RequirementRules, StrippedTree, torch_family.FamilyReading]:
    tree = tmp_path / "tree"
    shutil.copytree(trees[version], tree)
    paths = [p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()]
    detected = layout.detect_layout(paths, lambda p: (tree / p).read_text(), target_device=device)
    rules = requirement_rules.read_rules((tree / "setup.py").read_text())
    stripped = strip_and_read(tree, detected, rules, ResolveRequest(target_device=device, cuda=cuda), QUIET)
    reading = torch_family.family_members(stripped.removed, stripped.declared.requirements,
                                          carried=TORCH_INDEX.__contains__, environment=X86_64)
    return rules, stripped, reading


CASES = [(v, "cuda", cu) for v in VERSIONS for cu in ("cu128", "cu130")] + \
        [(v, d, "cu128") for v in VERSIONS for d in ("cpu", "empty")]


@pytest.mark.parametrize(("version", "device", "cuda"), CASES)
def test_declared_requirements_and_family(trees: dict[str, Path], tmp_path: Path, version: str, device: str,
                                          cuda: str) -> None:
    rules, stripped, reading = _read_as_built(trees, tmp_path, version, device, cuda)
    assert rules.from_setup_py
    assert [(r.contains, r.cuda_major, r.replace) for r in rules.cuda_rules] == RULES[version]
    added = "" if device == "empty" else ADDED.get((version, cuda if device == "cuda" else device),
                                                   ADDED.get((version, device), ""))
    assert stripped.declared.file == FILE[device]
    assert list(stripped.declared.requirements) == list(dict.fromkeys(_lines(COMMON[version]) + _lines(added)))
    family = {"cuda": CUDA_FAMILY, "cpu": CPU_FAMILY}.get(device, {}).get(version, [])
    assert [(m.name, str(m.specifier), m.origin) for m in reading.members] == family
    assert list(reading.not_locked) == [str(Requirement(r)) for r in NOT_LOCKED.get((version, device), [])]


# PyTorch's stable cu128 index, as far as these checks need it (torchaudio's last release is 2.11.0)
RELEASED = {
    "torchaudio": ["2.9.0+cu128", "2.9.1+cu128", "2.10.0+cu128", "2.11.0+cu128"],
    "torchvision": ["0.26.0+cu128", "0.28.0+cu128", "0.29.0+cu128"],
    "torchcodec": ["0.14.0+cu128", "0.15.0+cu128"],
}


def test_0_33_0_asks_for_its_own_pins_where_the_index_has_them(trees: dict[str, Path], tmp_path: Path) -> None:
    _, _, reading = _read_as_built(trees, tmp_path, "0.33.0", "cuda", "cu128")
    asked = [torch_family.choose_release(m, [Version(v) for v in RELEASED[m.name]]).requirement
             for m in reading.members]
    # torch 2.14.0 with torchaudio 2.11.0 (uv then checks it fits; see test_resolve for the fallback)
    assert asked == ["torchaudio==2.11.0", "torchcodec>=0.14", "torchvision==0.29.0"]


# The build requirement file per version and target, from each tree's requirements/ and what its
# Dockerfiles and install docs use: Dockerfile.cpu installs requirements/build.txt (0.8.5.post1),
# requirements/cpu-build.txt (0.11.2: bind-mounted as build.txt) and requirements/build/cpu.txt
# (0.20.2 on); ROCm has rocm-build.txt, then build/rocm.txt; TPU has build/tpu.txt from 0.30.0.
# Every other target (and TPU before 0.30.0) builds with the file pyproject.toml mirrors.
GENERAL = {"0.8.5.post1": "requirements/build.txt", "0.11.2": "requirements/build.txt",
           "0.20.2": "requirements/build/cuda.txt", "0.30.0": "requirements/build/cuda.txt",
           "0.33.0": "requirements/build/cuda.txt"}
BUILD_FILE = {
    "0.8.5.post1": {"cpu": "requirements/build.txt", "rocm": "requirements/rocm-build.txt"},
    "0.11.2": {"cpu": "requirements/cpu-build.txt", "rocm": "requirements/rocm-build.txt"},
    "0.20.2": {"cpu": "requirements/build/cpu.txt", "rocm": "requirements/build/rocm.txt"},
    "0.30.0": {"cpu": "requirements/build/cpu.txt", "rocm": "requirements/build/rocm.txt",
               "tpu": "requirements/build/tpu.txt"},
    "0.33.0": {"cpu": "requirements/build/cpu.txt", "rocm": "requirements/build/rocm.txt",
               "tpu": "requirements/build/tpu.txt"},
}

# pyproject.toml's [build-system] requires after stripping (added to every build set)
PYPROJECT_BUILD = {
    "0.8.5.post1": "cmake>=3.26\nninja\npackaging\nsetuptools>=61\nsetuptools-scm>=8.0\nwheel\njinja2\n",
    "0.11.2": "cmake>=3.26.1\nninja\npackaging>=24.2\nsetuptools>=77.0.3,<81.0.0\nsetuptools-scm>=8.0\nwheel\njinja2\n",
    "0.20.2": "cmake>=3.26.1\nninja\npackaging>=24.2\nsetuptools>=77.0.3,<81.0.0\nsetuptools-scm>=8.0\nwheel\njinja2\n",
    "0.30.0": ("cmake>=3.26.1\nninja\npackaging>=24.2\nsetuptools>=77.0.3,<81.0.0\nsetuptools-scm>=8.0\n"
               "setuptools-rust>=1.9.0\nwheel\njinja2\n"),
    "0.33.0": ("cmake>=3.26.1\nninja\npackaging>=24.2\nsetuptools>=77.0.3,<81.0.0\nsetuptools-scm>=8.0\n"
               "setuptools-rust>=1.9.0\nwheel\njinja2\n"),
}
# The CPU build file after stripping (torch lines and, in the default mode of 0.11.2, the
# PyTorch index line removed; the 0.20.2 --extra-index-url line is an option, not a requirement)
CPU_BUILD = {
    "0.8.5.post1": "cmake>=3.26\nninja\npackaging\nsetuptools>=61\nsetuptools-scm>=8\nwheel\njinja2>=3.1.6\n",
    "0.11.2": ("cmake>=3.26.1\nninja\npackaging>=24.2\nsetuptools>=77.0.3,<81.0.0\nsetuptools-scm>=8\n"
               'scons; platform_machine == "aarch64"\nwheel\njinja2>=3.1.6\nregex\n'),
    "0.20.2": ("cmake>=3.26.1\nninja\npackaging>=24.2\nsetuptools==77.0.3\nsetuptools-scm>=8\nwheel\n"
               "jinja2>=3.1.6\nregex\n"),
    "0.30.0": ("cmake>=3.26.1\nninja\npackaging>=24.2\nsetuptools==77.0.3\nsetuptools-scm>=8\n"
               "setuptools-rust>=1.9.0\nwheel\njinja2>=3.1.6\nregex\n"),
    "0.33.0": ("cmake>=3.26.1\nninja\npackaging>=24.2\nsetuptools==78.1.1\nsetuptools-scm>=8\n"
               "setuptools-rust>=1.9.0\nwheel\njinja2>=3.1.6\nregex\n"),
}


@pytest.mark.parametrize("version", VERSIONS)
def test_build_file_per_target(trees: dict[str, Path], version: str) -> None:
    tree = trees[version]
    paths = [p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()]
    for device in ("cuda", "cpu", "rocm", "tpu", "xpu", "empty"):
        detected = layout.detect_layout(paths, lambda p: (tree / p).read_text(), target_device=device)
        assert detected.build_requirements == BUILD_FILE[version].get(device, GENERAL[version]), device


@pytest.mark.parametrize("version", VERSIONS)
def test_cpu_locks_its_own_build_set(trees: dict[str, Path], tmp_path: Path, version: str) -> None:
    _, cpu, _ = _read_as_built(trees, tmp_path / "cpu", version, "cpu", "cu128")
    assert list(cpu.build) == list(dict.fromkeys(_lines(CPU_BUILD[version]) + _lines(PYPROJECT_BUILD[version])))
    _, cuda, _ = _read_as_built(trees, tmp_path / "cuda", version, "cuda", "cu128")
    # from 0.11.2 on, the CUDA file also asks for `build` (and from 0.20.2 protobuf), the CPU one not
    assert ("build" in cuda.build, "build" in cpu.build) == (version != "0.8.5.post1", False)
