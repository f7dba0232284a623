"""Build script of the vllm-lock test-world vLLM (shaped like vLLM's setup.py)."""
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


# ---- precompiled modules, vLLM's Python-only build ----------------------------------------
# As vLLM's setup.py and envs.py: VLLM_USE_PRECOMPILED (1/true), or VLLM_PRECOMPILED_WHEEL_LOCATION
# set at all, means the compiled modules are copied out of a vLLM wheel into the tree and shipped
# as package data, build_ext builds nothing, and a CUDA build's version ends in "precompiled"
# (unless VLLM_SKIP_PRECOMPILED_VERSION_SUFFIX=1). A local wheel is read where it is; the test
# world has no wheel index to fetch one from.
USE_PRECOMPILED = (os.environ.get("VLLM_USE_PRECOMPILED", "").strip().lower() in ("1", "true")
                   or bool(os.environ.get("VLLM_PRECOMPILED_WHEEL_LOCATION")))
_COMPILED_MEMBER = re.compile(r"vllm/_C[^/]*\.so")


def extract_precompiled():
    """The wheel's compiled modules into the tree; {package: [file names]} for package_data."""
    import shutil
    import zipfile

    location = os.environ.get("VLLM_PRECOMPILED_WHEEL_LOCATION")
    if not location:
        _fail("VLLM_USE_PRECOMPILED: the test world publishes no precompiled wheels; "
              "set VLLM_PRECOMPILED_WHEEL_LOCATION to a local vLLM wheel")
    if not os.path.isfile(location):
        _fail(f"VLLM_PRECOMPILED_WHEEL_LOCATION={location}: not a local file (the test world downloads nothing)")
    print(f"Using existing wheel at {location}")
    patch = {}
    with zipfile.ZipFile(location) as wheel:
        for member in wheel.infolist():
            if not _COMPILED_MEMBER.fullmatch(member.filename):
                continue
            print(f"[extract] {member.filename}")
            target = os.path.join(ROOT, member.filename)
            with wheel.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            mode = member.external_attr >> 16
            if mode:
                os.chmod(target, mode)
            patch.setdefault(os.path.dirname(member.filename).replace("/", "."), []).append(
                os.path.basename(member.filename))
    if not patch:
        _fail(f"{location} holds no compiled vLLM module (vllm/_C*.so)")
    return patch


class precompiled_build_ext(build_ext):
    """Builds nothing: the compiled modules came from the precompiled wheel."""

    def run(self):
        print("Skipping build_ext: using precompiled extensions.")


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
if (USE_PRECOMPILED and TARGET == "cuda" and not os.environ.get("VLLM_VERSION_OVERRIDE")
        and os.environ.get("VLLM_SKIP_PRECOMPILED_VERSION_SUFFIX", "0") in ("", "0")):
    VERSION += ("." if "+" in VERSION else "+") + "precompiled"
PACKAGE_DATA = {"vllm": ["_build_info.json", "py.typed"]}
if USE_PRECOMPILED and ext_modules:
    for package, names in extract_precompiled().items():
        PACKAGE_DATA.setdefault(package, []).extend(names)
    cmdclass["build_ext"] = precompiled_build_ext
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
    "precompiled": USE_PRECOMPILED,
    # CMake does not run on a precompiled build: nothing fetches or reads the external sources
    "external_sources": {} if USE_PRECOMPILED else external_sources(),
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
    package_data=PACKAGE_DATA,
)
