"""File contents of the vLLM-shaped repository, per layout and revision."""

from __future__ import annotations

from dataclasses import dataclass

from . import crates

OLD, PREFIX, TOOLS = "old", "prefix", "tools"
CUDA_SUPPORTED_ARCHS = "7.5;8.0;8.6;8.9;9.0;10.0;12.0"


@dataclass(frozen=True)
class ExternalUrls:
    """GIT_REPOSITORY of each FetchContent pin (file:// URLs into the world's external/)."""

    cutlass: str
    flash_attn: str
    flashmla: str


@dataclass(frozen=True)
class RepoState:
    """What varies between commits of the fake vLLM repository."""

    layout: str
    torch: str  # torch pin in requirements and pyproject
    torchvision: str
    torchaudio: str
    cutlass_tag: str
    flash_attn_tag: str  # a flash-attention commit SHA
    urls: ExternalUrls
    flashmla_tag: str | None = None  # a FlashMLA commit SHA
    revision: int = 0  # bumped by commit_to_main
    # The archs csrc/cuda/CMakeLists.txt builds kernels for (vLLM's CUDA_SUPPORTED_ARCHS): an arch
    # of TORCH_CUDA_ARCH_LIST outside it is silently left out, as in vLLM.
    cuda_supported_archs: str = CUDA_SUPPORTED_ARCHS
    rust: bool = False  # the Rust frontend (crates.py): rust/, rust-toolchain.toml, setuptools-rust


OLD_SCRIPT = '''\
import glob

requires_files = glob.glob("requirements/*.txt")
requires_files += ["pyproject.toml"]
for file in requires_files:
    print(f">>> cleaning {file}")
    with open(file) as f:
        lines = f.readlines()
    if "torch" in "".join(lines).lower():
        print("removed:")
        with open(file, "w") as f:
            for line in lines:
                if "torch" not in line.lower():
                    f.write(line)
                else:
                    print(line.strip())
    print(f"<<< done cleaning {file}")
    print()
'''

PREFIX_SCRIPT = '''\
"""Remove torch pins so that an already installed torch is used."""
import argparse
import glob

PREFIXES = ("torch=", "torchvision=", "torchaudio=", "torchcodec=")


def _matches(line: str, prefix_mode: bool) -> bool:
    if not prefix_mode:
        return "torch" in line.lower()
    text = "".join(line.split()).lower().lstrip("\\"'")
    return text.startswith(PREFIXES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--prefix",
        action="store_true",
        help="only remove lines that pin torch, torchvision, torchaudio or torchcodec",
    )
    args = parser.parse_args()
    files = glob.glob("requirements/**/*.txt", recursive=True)
    files += glob.glob("requirements/**/*.in", recursive=True)
    files += ["pyproject.toml"]
    for file in sorted(set(files)):
        with open(file) as f:
            lines = f.readlines()
        if "torch" not in "".join(lines).lower():
            continue
        print(f">>> cleaning {file}")
        with open(file, "w") as f:
            for line in lines:
                if _matches(line, args.prefix):
                    print(f"removed: {line.strip()}")
                else:
                    f.write(line)


if __name__ == "__main__":
    main()
'''

SETUP_PY = r'''"""Build script of the vllm-lock test-world vLLM (shaped like vLLM's setup.py)."""
import datetime
import glob
import json
import os
import re
import subprocess
import sys

import torch  # noqa: F401  (module level, like vLLM: the build needs the installed torch)
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


def _git(*args):
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def _date_suffix():
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        when = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
    else:
        when = datetime.datetime.now(datetime.timezone.utc)
    return when.strftime("%Y%m%d")


def get_version():
    """setuptools-scm style version from git describe (no-guess-dev rules of vLLM)."""
    override = os.environ.get("VLLM_VERSION_OVERRIDE")
    if override:
        return override
    if not os.path.exists(os.path.join(ROOT, ".git")):
        return "0.0.0+unknown"
    try:
        described = _git("describe", "--dirty", "--tags", "--long", "--abbrev=40",
                         "--match", "v[0-9]*")
    except (OSError, subprocess.CalledProcessError):
        try:
            sha = _git("rev-parse", "HEAD")
            count = _git("rev-list", "--count", "HEAD")
        except (OSError, subprocess.CalledProcessError):
            return "0.0.0+unknown"
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
        local = "g" + sha[:9] + ("." + "d" + _date_suffix() if dirty else "")
        return f"0.1.dev{count}+{local}"
    dirty = described.endswith("-dirty")
    if dirty:
        described = described[: -len("-dirty")]
    tag, distance, node = described.rsplit("-", 2)
    base = tag[1:] if tag.startswith("v") else tag
    distance = int(distance)
    if distance == 0 and not dirty:
        return base
    parts = base.split(".")
    parts[-1] = str(int(parts[-1]) + 1)
    local = "g" + node[1:10] + ("." + "d" + _date_suffix() if dirty else "")
    return ".".join(parts) + f".dev{distance}+{local}"


def _read_requirements(name):
    out = []
    with open(os.path.join(ROOT, "requirements", name)) as f:
        for raw in f:
            line = raw.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("-r "):
                out += _read_requirements(line.split(None, 1)[1])
            elif not line.startswith("-"):
                out.append(line)
    return out


# ---- external sources, consumed the way vLLM's CMake (FetchContent) does -------------------
_DECLARE = re.compile(r"FetchContent_Declare\(\s*([A-Za-z0-9_\-]+)(.*?)\)", re.DOTALL)
_SOURCE_DIR = re.compile(r"SOURCE_DIR\s+\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SUBMODULES = {"vllm-flash-attn": "csrc/cutlass"}  # must be checked out (vLLM issue 13424)


def _fail(message):
    sys.exit(f"error: {message}")


def _cmake_value(body, key):
    match = re.search(key + r'\s+"?([^\s")]+)"?', body)
    return match.group(1) if match else None


def external_pins():
    """[(name, GIT_REPOSITORY, GIT_TAG, override variable or None)] from the cmake files."""
    paths = [os.path.join(ROOT, "CMakeLists.txt")]
    paths += sorted(glob.glob(os.path.join(ROOT, "cmake", "external_projects", "*.cmake")))
    pins, overrides = [], {}
    for path in paths:
        with open(path) as f:
            text = f.read()
        for match in _DECLARE.finditer(text):
            name, body = match.group(1), match.group(2)
            source_dir = _SOURCE_DIR.search(body)
            if source_dir:
                overrides[name] = source_dir.group(1)
            repo, tag = _cmake_value(body, "GIT_REPOSITORY"), _cmake_value(body, "GIT_TAG")
            if repo and tag:
                pins.append((name, repo, tag))
    return [(name, repo, tag, overrides.get(name)) for name, repo, tag in pins]


def _deps_git(name, *args, cwd):
    proc = subprocess.run(
        ["git", "-c", "protocol.file.allow=always", "-c", "advice.detachedHead=false", *args],
        cwd=cwd, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        _fail(f"fetching {name}: git {' '.join(args)} failed:\n{proc.stderr.strip()}")
    return proc.stdout.strip()


def _has_commit(src, tag):
    return subprocess.run(["git", "rev-parse", "--verify", "-q", tag + "^{commit}"], cwd=src,
                          capture_output=True).returncode == 0


def fetch_external(name, repo, tag):
    """FetchContent: clone into .deps/<name>-src (reused if there), check out tag, submodules."""
    src = os.path.join(ROOT, ".deps", name + "-src")
    if not os.path.isdir(os.path.join(src, ".git")):
        if os.path.exists(src):
            _fail(f"{src} exists but is not a git checkout; remove it")
        os.makedirs(os.path.dirname(src), exist_ok=True)
        _deps_git(name, "clone", "-q", repo, src, cwd=ROOT)
    elif not _has_commit(src, tag):
        _deps_git(name, "fetch", "-q", "--tags", "--force", "origin", cwd=src)
    _deps_git(name, "checkout", "-q", "--detach", tag, cwd=src)
    _deps_git(name, "submodule", "update", "-q", "--init", "--recursive", cwd=src)
    return src


def _source_id(name, src, where):
    path = os.path.join(src, "SOURCE_ID")
    if not os.path.isfile(path):
        _fail(f"{name}: {where} holds no SOURCE_ID: not a {name} source tree")
    with open(path) as f:
        return f.read().strip()


def consume_external(name, repo, tag, variable):
    """Where the build takes `name` from: the override directory if its variable is set (CMake:
    `if(VAR)`, so an empty value counts as unset), else a FetchContent-style fetch."""
    override = os.environ.get(variable) if variable else None
    if override:
        src, origin, where = os.path.abspath(override), "override", f"{variable}={override}"
        if not os.path.isdir(src):
            _fail(f"{name}: {where} is not a directory")
    elif "-DFETCHCONTENT_FULLY_DISCONNECTED=ON" in os.environ.get("CMAKE_ARGS", "").split():
        _fail(f"{name}: FETCHCONTENT_FULLY_DISCONNECTED is ON and {variable or 'no override'} is not set: "
              f"{name} was never populated (FetchContent downloads nothing in this mode)")
    else:
        src = fetch_external(name, repo, tag)
        origin, where = "fetched", f"the checkout of {repo} at {tag} ({src})"
    info = {"from": origin, "source_id": _source_id(name, src, where)}
    if name in SUBMODULES:
        sub = SUBMODULES[name]
        sub_id = os.path.join(src, sub, "SOURCE_ID")
        if not os.path.isfile(sub_id):
            _fail(f"{name}: the git submodule {sub} is not checked out in {src} "
                  f"({sub}/SOURCE_ID missing); an offline build needs the source tree with its "
                  "submodules (git submodule update --init --recursive), see vLLM issue 13424")
        with open(sub_id) as f:
            info["submodule_source_id"] = f.read().strip()
    return info


def external_sources():
    return {name: consume_external(name, repo, tag, variable)
            for name, repo, tag, variable in external_pins()}


class CMakeExtension(Extension):
    """An extension built by CMake from a source directory (vLLM's setup.py has the same)."""

    def __init__(self, name, cmake_dir):
        super().__init__(name, sources=[])
        self.cmake_dir = cmake_dir


def _cuda_compiler():
    cuda_home = os.environ.get("CUDA_HOME")
    if cuda_home:
        return os.path.join(cuda_home, "bin", "nvcc")
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        return "/usr/local/cuda/bin/nvcc"
    return "nvcc"


class cmake_build_ext(build_ext):
    """Configure and build each CMakeExtension with CMake (CUDA language, nvcc), as vLLM does:
    TORCH_CUDA_ARCH_LIST from the environment, $CMAKE_ARGS appended, MAX_JOBS parallel jobs."""

    def build_extension(self, ext):
        if not isinstance(ext, CMakeExtension):
            return super().build_extension(ext)
        import shutil
        import sysconfig

        output = os.path.abspath(self.get_ext_fullpath(ext.name))
        build_temp = os.path.abspath(os.path.join(self.build_temp, "cmake-" + ext.name))
        os.makedirs(build_temp, exist_ok=True)
        configure = [
            "cmake", "-S", os.path.join(ROOT, ext.cmake_dir), "-B", build_temp,
            "-DCMAKE_BUILD_TYPE=Release",
            "-DCMAKE_CUDA_COMPILER=" + _cuda_compiler(),
            "-DVLLM_PYTHON_INCLUDE_DIR=" + sysconfig.get_paths()["include"],
            "-DVLLM_EXT_OUTPUT=" + output,
        ]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        configure += os.environ.get("CMAKE_ARGS", "").split()
        subprocess.run(configure, check=True)
        jobs = os.environ.get("MAX_JOBS") or str(os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", build_temp, "-j", jobs], check=True)


TARGET = os.environ.get("VLLM_TARGET_DEVICE", "cuda")
CUDA_EXT = False
if TARGET == "cuda":
    try:
        from torch.utils.cpp_extension import BuildExtension, CUDAExtension
        CUDA_EXT = True
    except ImportError:  # the test world's fake torch has no cpp_extension: CMake + nvcc alone
        CUDA_EXT = False

cmdclass = {}
if TARGET == "empty":
    ext_modules = []
    EXT_KIND = "none"
elif TARGET == "cuda" and not CUDA_EXT:
    ext_modules = [CMakeExtension("vllm._C", "csrc/cuda")]
    cmdclass["build_ext"] = cmake_build_ext
    EXT_KIND = "cmake-cuda"
elif CUDA_EXT:
    nvcc_threads = os.environ.get("NVCC_THREADS", "1")
    ext_modules = [
        CUDAExtension(
            "vllm._C",
            ["csrc/hello_kernel.cu"],
            extra_compile_args={"cxx": ["-O2"], "nvcc": ["-O2", f"--threads={nvcc_threads}"]},
        )
    ]
    cmdclass["build_ext"] = BuildExtension
    EXT_KIND = "cuda"
else:
    ext_modules = [Extension("vllm._C", ["csrc/fake_ops.c"])]
    EXT_KIND = "c"

VERSION = get_version()
BUILD_INFO = {
    "version": VERSION,
    "torch_version": torch.__version__,
    "torch_cuda": getattr(getattr(torch, "version", None), "cuda", None),
    "torch_git_version": getattr(getattr(torch, "version", None), "git_version", None),
    "target_device": TARGET,
    "extension": EXT_KIND,
    "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST"),
    "VLLM_FLASH_ATTN_VERSION": os.environ.get("VLLM_FLASH_ATTN_VERSION"),
    "MAX_JOBS": os.environ.get("MAX_JOBS"),
    "NVCC_THREADS": os.environ.get("NVCC_THREADS"),
    "CMAKE_BUILD_TYPE": os.environ.get("CMAKE_BUILD_TYPE"),
    "external_sources": external_sources(),
}
with open(os.path.join(ROOT, "vllm", "_build_info.json"), "w") as f:
    json.dump(BUILD_INFO, f, indent=2, sort_keys=True)
    f.write("\n")

def _no_device():
    return TARGET == "empty"


def _is_cuda():
    return TARGET == "cuda"


def _is_cpu():
    return TARGET == "cpu"


def get_requirements():
    """The requirement file by target, as vLLM's setup.py picks it (vllm-lock reads this chain)."""
    if _no_device():
        requirements = _read_requirements("common.txt")
    elif _is_cuda():
        requirements = _read_requirements("cuda.txt")
    elif _is_cpu():
        requirements = _read_requirements("cpu.txt")
    else:
        raise ValueError("Unsupported platform, please use CUDA or CPU.")
    return requirements


requirements = get_requirements()

setup(
    version=VERSION,
    install_requires=requirements,
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    package_data={"vllm": ["_build_info.json", "py.typed"]},
)
'''

FAKE_OPS_C = r'''#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *answer(PyObject *self, PyObject *args) {
    return PyLong_FromLong(42);
}

static PyMethodDef methods[] = {
    {"answer", answer, METH_NOARGS, "Return 42."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", NULL, -1, methods};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
'''

HELLO_KERNEL_CU = r'''#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

__global__ void fill_kernel(int* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 42;
}

torch::Tensor hello(int64_t n) {
  auto out = torch::empty({n}, torch::dtype(torch::kInt32).device(torch::kCUDA));
  const int threads = 256;
  const int blocks = static_cast<int>((n + threads - 1) / threads);
  if (n > 0) {
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    fill_kernel<<<blocks, threads, 0, stream>>>(out.data_ptr<int>(), static_cast<int>(n));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return out;
}

int64_t answer() { return 42; }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("hello", &hello, "Fill a CUDA int32 tensor of length n with 42");
  m.def("answer", &answer, "Return 42");
}
'''

CUDA_CMAKELISTS = r'''cmake_minimum_required(VERSION 3.18)
project(vllm_cuda_kernels LANGUAGES CXX CUDA)
# The test world's CUDA kernels, built the way vLLM builds its own: TORCH_CUDA_ARCH_LIST from the
# environment, intersected with the archs these kernels support, each arch one -gencode flag.

set(CUDA_SUPPORTED_ARCHS "@SUPPORTED@")
set(CMAKE_CUDA_ARCHITECTURES OFF)  # the -gencode flags below decide

string(REPLACE " " ";" _requested "$ENV{TORCH_CUDA_ARCH_LIST}")
set(CUDA_ARCHS "")
foreach(_arch IN LISTS _requested)
  string(REGEX REPLACE "\\+PTX$" "" _arch "${_arch}")
  if(_arch AND _arch IN_LIST CUDA_SUPPORTED_ARCHS)
    list(APPEND CUDA_ARCHS "${_arch}")
  endif()
endforeach()
if(NOT CUDA_ARCHS)
  message(FATAL_ERROR "none of TORCH_CUDA_ARCH_LIST='$ENV{TORCH_CUDA_ARCH_LIST}' is supported (${CUDA_SUPPORTED_ARCHS})")
endif()
foreach(_arch IN LISTS CUDA_ARCHS)
  string(REPLACE "." "" _sm "${_arch}")
  string(APPEND CMAKE_CUDA_FLAGS " -gencode arch=compute_${_sm},code=sm_${_sm}")
endforeach()
if(DEFINED ENV{NVCC_THREADS})
  string(APPEND CMAKE_CUDA_FLAGS " --threads=$ENV{NVCC_THREADS}")
endif()
message(STATUS "CUDA archs: ${CUDA_ARCHS}; CMAKE_CUDA_FLAGS:${CMAKE_CUDA_FLAGS}")

add_library(_C MODULE ops.cu)
target_include_directories(_C PRIVATE "${VLLM_PYTHON_INCLUDE_DIR}")
get_filename_component(_out_dir "${VLLM_EXT_OUTPUT}" DIRECTORY)
get_filename_component(_out_name "${VLLM_EXT_OUTPUT}" NAME)
set_target_properties(_C PROPERTIES PREFIX "" SUFFIX "" OUTPUT_NAME "${_out_name}"
                      LIBRARY_OUTPUT_DIRECTORY "${_out_dir}")
'''

CUDA_OPS_CU = r'''#define PY_SSIZE_T_CLEAN
#include <Python.h>

// Device code for every arch of the build (cuobjdump --list-elf lists one cubin each).
__global__ void fill_kernel(int* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 42;
}

// Host code only: importing the module needs no GPU.
static PyObject* answer(PyObject* self, PyObject* args) { return PyLong_FromLong(42); }

static PyMethodDef methods[] = {
    {"answer", answer, METH_NOARGS, "Return 42."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", NULL, -1, methods};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
'''

INIT_PY = '''"""vLLM (vllm-lock test world)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vllm")
except PackageNotFoundError:  # not installed
    __version__ = "0.0.0+unknown"
'''

SCRIPTS_PY = '''"""The `vllm` command."""
import argparse
import sys


def main(argv=None):
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="vllm")
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="start the OpenAI-compatible server")
    args = parser.parse_args(argv)
    _infer_device()
    if args.version:
        print(version("vllm"))
        return 0
    if args.command == "serve":
        from vllm.entrypoints.openai.api_server import main as serve

        return serve([])
    parser.print_help()
    return 0


def _infer_device():
    """Like vLLM's CLI, which resolves the platform before parsing: an `empty` build has none."""
    import json
    import os

    import vllm

    with open(os.path.join(os.path.dirname(vllm.__file__), "_build_info.json")) as f:
        if json.load(f).get("target_device") == "empty":
            raise RuntimeError("Failed to infer device type")


if __name__ == "__main__":
    sys.exit(main())
'''

API_SERVER_PY = '''"""OpenAI-compatible API server (stub of the test world)."""
import argparse
import sys


def make_parser():
    parser = argparse.ArgumentParser(
        prog="vllm.entrypoints.openai.api_server",
        description="vLLM OpenAI-compatible API server (test world stub)",
    )
    parser.add_argument("--model", default="facebook/opt-125m")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    return parser


def main(argv=None):
    args = make_parser().parse_args(argv)
    print(f"api_server stub: model={args.model} host={args.host} port={args.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

GITIGNORE = """\
/build/
/dist/
*.egg-info/
*.so
__pycache__/
.deps/
vllm/_build_info.json
"""


def _common_txt(rev: int) -> str:
    return (
        "# Common runtime dependencies (some are needed by torch.compile)\n"
        "typing-extensions>=4.10\n"
        "filelock>=3.16.1\n"
        f"vllm-fake-dep-a>={'1.1' if rev else '1.0'}\n"
        'vllm-fake-dep-b>=0.2; platform_system == "Linux"\n'
        "open-clip-torch-fake>=1.0  # unrelated package whose name contains torch\n"
    )


def _cuda_txt(s: RepoState) -> str:
    return (
        "# Common dependencies\n"
        "-r common.txt\n"
        "\n"
        "# Dependencies for NVIDIA GPUs\n"
        f"torch=={s.torch}\n"
        f"torchaudio=={s.torchaudio}\n"
        "# These must be updated alongside torch\n"
        f"torchvision=={s.torchvision}\n"
    )


def _cpu_txt(s: RepoState) -> str:
    """Like vLLM's: the unpinned companions survive --prefix stripping (torch-family members the
    declared set names); the default mode deletes them with the torch pin."""
    return (
        "# Common dependencies\n"
        "-r common.txt\n"
        "\n"
        f"torch=={s.torch}\n"
        "# required for the image processors, this must be updated alongside torch\n"
        'torchaudio; platform_machine != "s390x"\n'
        'torchvision; platform_machine != "s390x"\n'
    )


def _build_txt(s: RepoState) -> str:
    return (
        "# Should be mirrored in pyproject.toml\n"
        "packaging>=24.2\n"
        "setuptools>=77.0.3,<80.0.0\n"
        "setuptools-scm>=8\n"
        + ("setuptools-rust>=1.9.0\n" if s.rust else "")
        + f"torch=={s.torch}\n"
        "wheel\n"
    )


def _build_cpu_txt(s: RepoState) -> str:
    """Like vLLM's requirements/build/cpu.txt (0.20 on): the CPU torch, from PyTorch's CPU index."""
    torch = f"torch=={s.torch}\n"
    return "--extra-index-url https://download.pytorch.org/whl/cpu\n" + _build_txt(s).replace(
        torch, f'torch=={s.torch}+cpu; platform_machine == "x86_64"\n')


def _pyproject(s: RepoState) -> str:
    uv = '\n[tool.uv]\nno-build-isolation-package = ["torch"]\n' if s.layout == TOOLS else ""
    rust = '\n    "setuptools-rust>=1.9.0",' if s.rust else ""
    return f'''[build-system]
# Should be mirrored in requirements/build{"/cuda" if s.layout != OLD else ""}.txt
requires = [
    "packaging>=24.2",
    "setuptools>=77.0.3,<80.0.0",
    "setuptools-scm>=8.0",{rust}
    "torch == {s.torch}",
    "wheel",
]
build-backend = "setuptools.build_meta"

[project]
name = "vllm"
authors = [{{name = "vLLM Team"}}]
license = "Apache-2.0"
readme = "README.md"
description = "A high-throughput and memory-efficient inference and serving engine for LLMs (vllm-lock test world)"
requires-python = ">=3.10,<3.14"
dynamic = ["version", "dependencies"]

[project.scripts]
vllm = "vllm.scripts:main"

[tool.setuptools.packages.find]
where = ["."]
include = ["vllm*"]
{uv}'''


def _cmakelists(s: RepoState) -> str:
    mla = "include(cmake/external_projects/flashmla.cmake)\n" if s.flashmla_tag else ""
    return f'''cmake_minimum_required(VERSION 3.26)
project(vllm_extensions LANGUAGES CXX)
# (test world: CMake never runs; setup.py reads these pins and fetches them itself)
include(FetchContent)

if(DEFINED ENV{{VLLM_CUTLASS_SRC_DIR}})
  set(VLLM_CUTLASS_SRC_DIR $ENV{{VLLM_CUTLASS_SRC_DIR}})
endif()

if(VLLM_CUTLASS_SRC_DIR)
  FetchContent_Declare(cutlass SOURCE_DIR ${{VLLM_CUTLASS_SRC_DIR}})
else()
  FetchContent_Declare(
        cutlass
        GIT_REPOSITORY {s.urls.cutlass}
        # Please keep this in sync with CUTLASS_REVISION line above.
        GIT_TAG {s.cutlass_tag}
        GIT_PROGRESS TRUE
        GIT_SHALLOW TRUE
  )
endif()
FetchContent_MakeAvailable(cutlass)

include(cmake/external_projects/vllm_flash_attn.cmake)
{mla}'''


def _flash_attn_cmake(s: RepoState) -> str:
    return f'''if(DEFINED ENV{{VLLM_FLASH_ATTN_SRC_DIR}})
  set(VLLM_FLASH_ATTN_SRC_DIR $ENV{{VLLM_FLASH_ATTN_SRC_DIR}})
endif()

if(VLLM_FLASH_ATTN_SRC_DIR)
  FetchContent_Declare(vllm-flash-attn SOURCE_DIR ${{VLLM_FLASH_ATTN_SRC_DIR}})
else()
  FetchContent_Declare(
          vllm-flash-attn
          GIT_REPOSITORY {s.urls.flash_attn}
          GIT_TAG {s.flash_attn_tag}
          GIT_PROGRESS TRUE
          # Don't share the vllm-flash-attn build between build types
          BINARY_DIR ${{CMAKE_BINARY_DIR}}/vllm-flash-attn
  )
endif()
FetchContent_MakeAvailable(vllm-flash-attn)
'''


def _flashmla_cmake(url: str, tag: str) -> str:
    return f'''if(DEFINED ENV{{FLASH_MLA_SRC_DIR}})
  set(FLASH_MLA_SRC_DIR $ENV{{FLASH_MLA_SRC_DIR}})
endif()

if(FLASH_MLA_SRC_DIR)
  FetchContent_Declare(flashmla SOURCE_DIR ${{FLASH_MLA_SRC_DIR}})
else()
  FetchContent_Declare(
        flashmla
        GIT_REPOSITORY {url}
        GIT_TAG {tag}
        GIT_PROGRESS TRUE
        CONFIGURE_COMMAND ""
        BUILD_COMMAND ""
  )
endif()
FetchContent_MakeAvailable(flashmla)
'''


def _with_rust(setup_py: str) -> str:
    """setup.py building the Rust frontend too (setuptools-rust's rust_extensions keyword)."""
    marker = "requirements = get_requirements()\n"
    assert marker in setup_py and "\nsetup(\n" in setup_py
    text = setup_py.replace("import datetime\n", "import datetime\n" + crates.SETUP_IMPORT, 1)
    text = text.replace(marker, marker + crates.SETUP_EXTENSIONS, 1)
    return text.replace("\nsetup(\n", "\nsetup(\n    rust_extensions=rust_extensions,\n", 1)


def repo_files(s: RepoState) -> dict[str, str]:
    """All tracked files of one commit."""
    files: dict[str, str] = {
        ".gitignore": GITIGNORE,
        "README.md": "# vLLM (vllm-lock test world)\n\nA tiny vLLM-shaped project.\n",
        "setup.py": SETUP_PY,
        "pyproject.toml": _pyproject(s),
        "CMakeLists.txt": _cmakelists(s),
        "cmake/external_projects/vllm_flash_attn.cmake": _flash_attn_cmake(s),
        "csrc/fake_ops.c": FAKE_OPS_C,
        "csrc/hello_kernel.cu": HELLO_KERNEL_CU,
        "csrc/cuda/CMakeLists.txt": CUDA_CMAKELISTS.replace("@SUPPORTED@", s.cuda_supported_archs),
        "csrc/cuda/ops.cu": CUDA_OPS_CU,
        "requirements/common.txt": _common_txt(s.revision),
        "requirements/cuda.txt": _cuda_txt(s),
        "requirements/cpu.txt": _cpu_txt(s),
        "vllm/__init__.py": INIT_PY,
        "vllm/py.typed": "",
        "vllm/scripts.py": SCRIPTS_PY,
        "vllm/entrypoints/__init__.py": "",
        "vllm/entrypoints/openai/__init__.py": "",
        "vllm/entrypoints/openai/api_server.py": API_SERVER_PY,
    }
    if s.layout == OLD:
        files["use_existing_torch.py"] = OLD_SCRIPT
        files["requirements/build.txt"] = _build_txt(s)
    else:
        files["use_existing_torch.py" if s.layout == PREFIX else "tools/use_existing_torch.py"] = (
            PREFIX_SCRIPT
        )
        files["requirements/build/cuda.txt"] = _build_txt(s)
        files["requirements/build/cpu.txt"] = _build_cpu_txt(s)
        files["requirements/test/cuda.in"] = "-r ../common.txt\npytest\ntorch==" + s.torch + "\n"
    if s.flashmla_tag:
        files["cmake/external_projects/flashmla.cmake"] = _flashmla_cmake(s.urls.flashmla, s.flashmla_tag)
    if s.rust:
        files.update(crates.rust_files())
        files["setup.py"] = _with_rust(SETUP_PY)
    if s.revision:
        files["docs/CHANGES.md"] = "".join(f"- change {i}\n" for i in range(1, s.revision + 1))
    return files
