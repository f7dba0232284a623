"""The test world: indexes, wheels, TLS, determinism, and a real build of the fake vLLM."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import ssl
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import uv

from vllm_lock_testworld import TestWorld, externals
from vllm_lock_testworld.repo import git, git_env

PEP691 = "application/vnd.pypi.simple.v1+json"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))


def fetch(url: str, accept: str | None = None, context: ssl.SSLContext | None = None,
          method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:
        return resp.status, dict(resp.headers), resp.read()


def links(url: str, context: ssl.SSLContext | None = None) -> list[dict[str, str | None]]:
    parser = _Links()
    parser.feed(fetch(url, context=context)[2].decode())
    return parser.links


def metadata(wheel: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(wheel)) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(name).decode()


def requires(wheel: bytes) -> list[str]:
    return [line.split(": ", 1)[1] for line in metadata(wheel).splitlines()
            if line.startswith("Requires-Dist: ")]


def _ymd(d: dt.date) -> str:
    return d.strftime("%Y%m%d")


def test_nightly_pages_absolute_links_without_hashes(world: TestWorld) -> None:
    root = [a["href"] for a in links(world.torch_nightly_index + "/")]
    assert {"torch/", "torchvision/", "torchaudio/", "pytorch-triton/",
            "typing-extensions/"} <= set(root)
    torch_links = links(world.torch_nightly_index + "/torch/")
    assert len(torch_links) >= 2 * len(world.nightly_dates)
    for a in torch_links:
        href = a["href"] or ""
        assert href.startswith(world.base_url + "/r2/whl/nightly/cu128/")
        assert "#" not in href
    names = {fn for fn in world.filenames("nightly", "torch")}
    for d in world.nightly_dates:
        for py in ("cp311", "cp312"):
            assert f"torch-2.10.0.dev{_ymd(d)}+cu128-{py}-{py}-manylinux_2_28_x86_64.whl" in names
    arm = [n for n in names if "aarch64" in n]
    assert arm and all(_ymd(world.aarch64_date) in n for n in arm)
    # non-normalized name and missing slash
    assert links(world.torch_nightly_index + "/PyTorch_Triton/")
    assert fetch(world.torch_nightly_index + "/torch")[0] == 200  # redirected to torch/


def test_release_and_general_pages_carry_hashes(world: TestWorld) -> None:
    rel = links(world.torch_release_index + "/torch/")
    assert rel
    for a in rel:
        href = a["href"] or ""
        url, _, frag = href.partition("#sha256=")
        assert len(frag) == 64
        assert hashlib.sha256(fetch(url)[2]).hexdigest() == frag
    versions = {a["href"].split("/")[-1].split("-")[1] for a in rel if a["href"]}
    assert versions == {"2.9.0%2Bcu128", "2.9.1%2Bcu128"}
    assert world.release_versions == ["2.9.0", "2.9.1"]
    gen = links(world.general_index + "/setuptools/")
    assert gen[0]["data-requires-python"] == ">=3.9"
    assert "#sha256=e147c0549f27" in (gen[0]["href"] or "")
    status, headers, body = fetch(world.general_index + "/filelock/", accept=PEP691)
    assert headers["Content-Type"].startswith(PEP691)
    doc = json.loads(body)
    assert doc["meta"]["api-version"] == "1.1"
    (f,) = doc["files"]
    assert f["hashes"]["sha256"] == hashlib.sha256(fetch(f["url"])[2]).hexdigest()
    assert f["size"] > 0 and f["requires-python"] == ">=3.10"
    # the nightly index never answers JSON
    _, headers, _ = fetch(world.torch_nightly_index + "/torch/", accept=PEP691)
    assert headers["Content-Type"].startswith("text/html")


def test_wheels_are_valid(world: TestWorld) -> None:
    d = world.latest_consistent_date
    fn = f"torch-2.10.0.dev{_ymd(d)}+cu128-cp312-cp312-manylinux_2_28_x86_64.whl"
    data = fetch(world.file_url(fn))[2]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        infos = zf.infolist()
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
        record = zf.read(f"torch-2.10.0.dev{_ymd(d)}+cu128.dist-info/RECORD").decode()
        checked = set()
        for line in record.splitlines():
            path, digest, size = line.rsplit(",", 2)
            if not digest:
                continue
            blob = zf.read(path)
            want = base64.urlsafe_b64encode(hashlib.sha256(blob).digest()).rstrip(b"=").decode()
            assert digest == "sha256=" + want and int(size) == len(blob)
            checked.add(path)
        assert checked == {i.filename for i in infos} - {f"torch-2.10.0.dev{_ymd(d)}+cu128.dist-info/RECORD"}
        assert "Tag: cp312-cp312-manylinux_2_28_x86_64" in zf.read(
            f"torch-2.10.0.dev{_ymd(d)}+cu128.dist-info/WHEEL").decode()
    reqs = requires(data)
    triton = world.nightly_versions(d)["pytorch-triton"]
    assert "filelock" in reqs and "typing-extensions>=4.10.0" in reqs
    assert (f'pytorch-triton=={triton}; platform_system == "Linux" and '
            'platform_machine == "x86_64"') in reqs
    assert "Requires-Python: >=3.10" in metadata(data)
    rel = fetch(world.file_url("torch-2.9.1+cu128-cp311-cp311-manylinux_2_28_x86_64.whl"))[2]
    assert any(r.startswith("triton==3.5.1;") for r in requires(rel))


def _pins(world: TestWorld, project: str) -> dict[str, str]:
    """file date -> torch version pinned, for cp312 x86_64 files of project."""
    out = {}
    for fn in world.filenames("nightly", project):
        if "cp312" in fn and "x86_64" in fn:
            (pin,) = [r for r in requires(fetch(world.file_url(fn))[2]) if r.startswith("torch==")]
            out[fn.split(".dev")[1][:8]] = pin.removeprefix("torch==")
    return out


def test_companion_scenarios(world: TestWorld) -> None:
    vision, audio = _pins(world, "torchvision"), _pins(world, "torchaudio")
    tv = lambda d: f"2.10.0.dev{_ymd(d)}+cu128"  # noqa: E731
    broken, lag = world.broken_companion_date, world.lagging_companion_date
    assert broken in world.nightly_dates and lag in world.nightly_dates
    assert tv(broken) not in vision.values() and tv(broken) not in audio.values()
    assert _ymd(lag) not in vision
    assert vision[_ymd(lag + dt.timedelta(days=1))] == tv(lag)
    assert audio[_ymd(lag)] == tv(lag)
    consistent = [d for d in world.nightly_dates
                  if tv(d) in vision.values() and tv(d) in audio.values()]
    assert world.latest_consistent_date == max(consistent)
    assert max(world.nightly_dates) > world.latest_consistent_date
    versions = world.nightly_versions(lag)
    assert versions["torchvision"] == f"0.25.0.dev{_ymd(lag + dt.timedelta(days=1))}+cu128"
    # dependency-confusion decoy on the nightly index
    decoy = world.filenames("nightly", "typing-extensions")
    assert decoy == ["typing_extensions-4.99.0-py3-none-any.whl"]
    assert world.file_sha256(decoy[0]) != world.file_sha256(
        "typing_extensions-4.15.0-py3-none-any.whl")


def test_https_with_and_without_ca(world: TestWorld) -> None:
    url = world.https_url(world.torch_nightly_index + "/torch/")
    assert url.startswith("https://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=str(world.ca_cert))
    hrefs = [a["href"] or "" for a in links(url, context=ctx)]
    assert hrefs and all(h.startswith(world.https_base_url + "/r2/") for h in hrefs)
    assert fetch(hrefs[0], context=ctx)[0] == 200
    localhost = ssl.create_default_context(cafile=str(world.ca_cert))
    assert fetch(url.replace("127.0.0.1", "localhost"), context=localhost)[0] == 200
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED") as err:
        fetch(url, context=ssl.create_default_context())
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    # the server survives the failed handshake
    assert fetch(url, context=ctx)[0] == 200


def test_request_log_head_and_404(world: TestWorld) -> None:
    world.clear_requests()
    fn = world.filenames("nightly", "torchaudio")[0]
    status, headers, body = fetch(world.file_url(fn), method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    with pytest.raises(urllib.error.HTTPError, match="^HTTP Error 404") as err:
        fetch(world.base_url + "/nope/")
    assert err.value.code == 404
    with pytest.raises(urllib.error.HTTPError, match="^HTTP Error 404"):
        fetch(world.torch_nightly_index + "/no-such-project/")
    log = world.requests
    assert log[0][0] == "HEAD" and log[0][1].startswith("/r2/whl/nightly/cu128/")
    assert ("GET", "/nope/") in log


def test_mutations_swap_publish_commit(tmp_path: Path) -> None:
    with TestWorld.create(tmp_path / "w") as w:
        fn = w.filenames("nightly", "torch")[0]
        before = hashlib.sha256(fetch(w.file_url(fn))[2]).hexdigest()
        w.swap_nightly_file(fn)
        after = hashlib.sha256(fetch(w.file_url(fn))[2]).hexdigest()
        assert before != after == w.file_sha256(fn)
        assert fn in {a["href"].split("/")[-1].replace("%2B", "+")
                      for a in links(w.torch_nightly_index + "/torch/") if a["href"]}
        new = dt.date(2026, 11, 20)
        w.publish_nightly(new)
        assert w.nightly_dates[-1] == new and w.latest_consistent_date == new
        with pytest.raises(ValueError, match=r"^nightly files for 2026-11-20 already published: torch-"):
            w.publish_nightly(new)
        head = w.commits[-1]
        shas = w.commit_to_main(2)
        assert len(shas) == 2 and w.commits[-3:] == [head, *shas]
        assert git(w.repo_path, "rev-parse", "HEAD") == shas[-1]
        assert git(w.repo_path, "status", "--porcelain") == ""
        desc = git(w.repo_path, "describe", "--tags", "--long", "--match", "v[0-9]*")
        assert desc.startswith("v0.32.0-4-g")
        _check_move_external_tag(w)


def _check_move_external_tag(w: TestWorld) -> None:
    cutlass = w.external_root / "nvidia" / "cutlass"
    head = git(cutlass, "rev-parse", "HEAD")
    for tag, kind in (("v4.2.1", "tag"), ("v4.0.0", "commit")):  # annotated stays annotated
        before = w.external_commit("cutlass", tag)
        sha = w.move_external_tag("cutlass", tag)
        assert sha != before and w.external_commit("cutlass", tag) == sha
        assert git(cutlass, "rev-parse", f"{sha}^") == before
        assert git(cutlass, "cat-file", "-t", tag) == kind
        assert git(cutlass, "show", f"{tag}:SOURCE_ID") == f"cutlass {tag} (retagged)"
        remote = _ls_remote(w.external_url("cutlass"))
        assert remote[f"refs/tags/{tag}" + ("^{}" if kind == "tag" else "")] == sha
    assert git(cutlass, "rev-parse", "HEAD") == head  # no branch or work tree moved
    assert git(cutlass, "status", "--porcelain") == ""


def test_moved_external_tags_are_deterministic(tmp_path: Path) -> None:
    a, b = (externals.build_externals(tmp_path / name / "external") for name in ("a", "b"))
    assert a.commits == b.commits
    for _ in range(2):  # a second move of the same tag also matches
        assert externals.move_tag(a, "cutlass", "v4.1.0") == externals.move_tag(b, "cutlass", "v4.1.0")
    moved = externals.move_tag(a, "flashmla", "v1")  # no such tag yet: created on HEAD
    assert externals.tag_commit(a.path("flashmla"), "v1") == moved
    assert git(a.path("flashmla"), "rev-parse", f"{moved}^") == a.commit("flashmla", "2")


def _ls_remote(url: str) -> dict[str, str]:
    out = git(Path.cwd(), "ls-remote", url)
    return {ref: sha for sha, ref in (line.split("\t") for line in out.splitlines())}


def _log(repo: Path, rev: str) -> list[str]:
    return git(repo, "log", "--reverse", "--format=%s|%ad|%cd|%an|%ae", "--date=iso-strict",
               rev).splitlines()


def test_two_worlds_are_identical(world: TestWorld, tmp_path: Path) -> None:
    with TestWorld.create(tmp_path / "other") as other:
        for index in ("nightly", "release", "general"):
            names = world.filenames(index)
            assert names == other.filenames(index)
            assert [world.file_sha256(n) for n in names] == [other.file_sha256(n) for n in names]
        # external repositories: byte-identical histories, whatever the world's path
        for name in ("cutlass", "vllm-flash-attn", "flashmla"):
            assert _ls_remote(other.external_url(name)) == _ls_remote(world.external_url(name))
        for name, role in (("vllm-flash-attn", "old"), ("vllm-flash-attn", "newest"),
                           ("flashmla", "1"), ("flashmla", "2"), ("cutlass", "v4.2.1")):
            assert other.external_commit(name, role) == world.external_commit(name, role)
        # vLLM: its cmake files carry the world's path, so only subjects, dates and count match
        n = len(other.commits)
        assert len(world.commits) >= n
        assert _log(other.repo_path, "HEAD") == _log(world.repo_path, world.commits[n - 1])
        assert set(other.tags) == set(world.tags)
        assert set(other.layout_commits) == set(world.layout_commits)
        assert other.nightly_dates == world.nightly_dates


def test_external_repositories(world: TestWorld, tmp_path: Path) -> None:
    root = world.external_root
    assert root == world.root / "external" and world.urls()["external_root"] == str(root)
    assert world.external_url("cutlass") == f"file://{root}/nvidia/cutlass"
    assert world.external_url("vllm-flash-attn") == f"file://{root}/vllm-project/flash-attention"
    assert world.external_url("flashmla") == f"file://{root}/vllm-project/FlashMLA"
    cutlass = root / "nvidia" / "cutlass"
    remote = _ls_remote(world.external_url("cutlass"))
    tags = {r for r in remote if r.startswith("refs/tags/")}
    assert tags == {"refs/tags/v4.0.0", "refs/tags/v4.1.0", "refs/tags/v4.2.1",
                    "refs/tags/v4.2.1^{}"}
    for tag in ("v4.0.0", "v4.1.0", "v4.2.1"):
        sha = world.external_commit("cutlass", tag)
        assert git(cutlass, "show", f"{sha}:SOURCE_ID") + "\n" == f"cutlass {tag}\n"
        assert "#define CUTLASS_MAJOR 4" in git(cutlass, "show", f"{sha}:include/cutlass/version.h")
    # lightweight tags name the commit; the annotated one peels to it
    assert remote["refs/tags/v4.0.0"] == world.external_commit("cutlass", "v4.0.0")
    assert git(cutlass, "cat-file", "-t", "refs/tags/v4.2.1") == "tag"
    assert remote["refs/tags/v4.2.1"] != remote["refs/tags/v4.2.1^{}"]
    assert remote["refs/tags/v4.2.1^{}"] == world.external_commit("cutlass", "v4.2.1")
    fa = root / "vllm-project" / "flash-attention"
    for role in ("old", "new", "newest"):
        sha = world.external_commit("vllm-flash-attn", role)
        assert git(fa, "show", f"{sha}:SOURCE_ID") == f"flash-attention {role}"
        assert git(fa, "ls-tree", sha, "csrc/cutlass") == (
            f"160000 commit {world.external_commit('cutlass', 'v4.2.1')}\tcsrc/cutlass")
        assert git(fa, "config", "--blob", f"{sha}:.gitmodules", "--get",
                   "submodule.csrc/cutlass.url") == "../../nvidia/cutlass"
    mla = root / "vllm-project" / "FlashMLA"
    for role in ("1", "2"):
        assert git(mla, "show", f"{world.external_commit('flashmla', role)}:SOURCE_ID") == (
            f"flashmla {role}")
    with pytest.raises(KeyError, match="external source 'cutlass' has no tag or role 'v9.9.9'"):
        world.external_commit("cutlass", "v9.9.9")
    with pytest.raises(KeyError, match="no external source 'deepgemm'"):
        world.external_url("deepgemm")
    # the relative submodule URL resolves next to the superproject, as on GitHub
    clone = tmp_path / "fa"
    git(tmp_path, "-c", "protocol.file.allow=always", "clone", "-q", "--recurse-submodules",
        world.external_url("vllm-flash-attn"), str(clone))
    assert (clone / "csrc" / "cutlass" / "SOURCE_ID").read_text() == "cutlass v4.2.1\n"


def test_vllm_pins_the_external_repositories(world: TestWorld) -> None:
    r = world.repo_path
    fa_pins = [(world.tags["v0.10.0"], "old"), (world.commits[3], "new"), ("HEAD", "newest")]
    for rev, role in fa_pins:
        text = git(r, "show", f"{rev}:cmake/external_projects/vllm_flash_attn.cmake")
        assert f"GIT_REPOSITORY {world.external_url('vllm-flash-attn')}\n" in text
        assert f"GIT_TAG {world.external_commit('vllm-flash-attn', role)}\n" in text
        assert "FetchContent_Declare(vllm-flash-attn SOURCE_DIR ${VLLM_FLASH_ATTN_SRC_DIR})" in text
    for rev, role in ((world.tags["v0.32.0"], "1"), ("HEAD", "2")):
        text = git(r, "show", f"{rev}:cmake/external_projects/flashmla.cmake")
        assert f"GIT_REPOSITORY {world.external_url('flashmla')}\n" in text
        assert f"GIT_TAG {world.external_commit('flashmla', role)}\n" in text
        assert "FetchContent_Declare(flashmla SOURCE_DIR ${FLASH_MLA_SRC_DIR})" in text
    cmake = git(r, "show", "HEAD:CMakeLists.txt")
    assert f"GIT_REPOSITORY {world.external_url('cutlass')}\n" in cmake
    assert "FetchContent_Declare(cutlass SOURCE_DIR ${VLLM_CUTLASS_SRC_DIR})" in cmake
    for rev in world.commits:
        assert "github.com" not in git(r, "grep", "-h", "GIT_REPOSITORY", rev)


def test_repository_layouts(world: TestWorld) -> None:
    r = world.repo_path
    assert world.repo_url == f"file://{r}"
    assert git(r, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(r, "rev-parse", "HEAD") == world.commits[-1]
    assert set(world.tags) == {"v0.10.0", "v0.20.0", "v0.32.0"}
    desc = git(r, "describe", "--tags", "--long", "--abbrev=40", "--match", "v[0-9]*")
    assert desc == f"v0.32.0-2-g{world.commits[-1]}"
    expect = {
        "old": ("use_existing_torch.py", "requirements/build.txt"),
        "prefix": ("use_existing_torch.py", "requirements/build/cuda.txt"),
        "tools": ("tools/use_existing_torch.py", "requirements/build/cuda.txt"),
    }
    for layout, (script, build) in expect.items():
        files = set(git(r, "ls-tree", "-r", "--name-only", world.layout_commits[layout]).split())
        assert {script, build, "requirements/common.txt", "requirements/cuda.txt",
                "pyproject.toml", "setup.py", "CMakeLists.txt",
                "cmake/external_projects/vllm_flash_attn.cmake"} <= files
        text = git(r, "show", f"{world.layout_commits[layout]}:{script}")
        assert ("--prefix" in text) == (layout != "old")
    assert "use_existing_torch.py" not in git(r, "ls-tree", "--name-only", "HEAD").split()
    cmake_old = git(r, "show", f"{world.tags['v0.10.0']}:CMakeLists.txt")
    cmake_new = git(r, "show", "HEAD:CMakeLists.txt")
    assert "GIT_TAG v4.0.0" in cmake_old and "GIT_TAG v4.2.1" in cmake_new
    pyproject = git(r, "show", "HEAD:pyproject.toml")
    assert '"torch == 2.10.0"' in pyproject and 'no-build-isolation-package = ["torch"]' in pyproject


def test_fake_vllm_builds_with_uv(world: TestWorld, tmp_path: Path) -> None:
    uv_bin = uv.find_uv_bin()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "VIRTUAL_ENV"))}
    env.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_PYTHON_DOWNLOADS="never",
               UV_NO_CONFIG="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")

    def run(*args: object, cwd: Path | None = None, extra: dict[str, str] | None = None) -> str:
        proc = subprocess.run([str(a) for a in args], cwd=cwd, env={**env, **(extra or {})},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    checkout = tmp_path / "vllm"
    run("git", "clone", "-q", world.repo_url, checkout)
    venv = tmp_path / "venv"
    py = venv / "bin" / "python"
    run(uv_bin, "venv", "-q", "--python", sys.executable, venv)
    versions = world.nightly_versions(world.latest_consistent_date)
    run(uv_bin, "pip", "install", "-q", "--python", py, "--index-url", world.general_index,
        "setuptools>=77,<80", "setuptools-scm>=8", "wheel", "packaging>=24.2")
    run(uv_bin, "pip", "install", "-q", "--python", py, "--no-deps",
        "--index-url", world.https_url(world.torch_nightly_index), "--cert", world.ca_cert,
        f"torch=={versions['torch']}", f"pytorch-triton=={versions['pytorch-triton']}",
        f"torchaudio=={versions['torchaudio']}", f"torchvision=={versions['torchvision']}")
    out = run(py, "tools/use_existing_torch.py", "--prefix", cwd=checkout)
    assert "removed: torch==2.10.0" in out
    epoch = int(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC).timestamp())
    # the CPU build (a plain C extension); the CUDA one (CMake + nvcc) is tests/test_cuda_build.py's
    build_env = {"VLLM_TARGET_DEVICE": "cpu", "SOURCE_DATE_EPOCH": str(epoch), "TORCH_CUDA_ARCH_LIST": "12.0",
                 "VLLM_FLASH_ATTN_VERSION": "2", "MAX_JOBS": "3", "NVCC_THREADS": "2"}
    run(uv_bin, "pip", "install", "-q", "--python", py, "--index-url", world.general_index,
        "--no-build-isolation", "-e", checkout, extra=build_env)
    version = run(venv / "bin" / "vllm", "--version").strip()
    assert version == f"0.32.1.dev2+g{world.commits[-1][:9]}.d20261120"
    info = json.loads(run(py, "-c", "import vllm,pathlib;print(pathlib.Path(vllm.__file__)"
                                    ".with_name('_build_info.json').read_text())"))
    assert info["torch_version"] == versions["torch"] and info["torch_cuda"] == "12.8"
    assert info["TORCH_CUDA_ARCH_LIST"] == "12.0" and info["VLLM_FLASH_ATTN_VERSION"] == "2"
    assert info["MAX_JOBS"] == "3" and info["NVCC_THREADS"] == "2"
    assert info["extension"] == "c" and info["version"] == version
    assert run(py, "-c", "import vllm._C; print(vllm._C.answer())").strip() == "42"
    assert "usage" in run(py, "-m", "vllm.entrypoints.openai.api_server", "--help")
    installed = run(uv_bin, "pip", "list", "--python", py, "--format", "json")
    names = {p["name"] for p in json.loads(installed)}
    assert {"vllm-fake-dep-a", "vllm-fake-dep-b", "open-clip-torch-fake", "filelock"} <= names
    # no override variable: every pin fetched like FetchContent (file://, with the submodule)
    assert info["external_sources"] == {
        "cutlass": {"from": "fetched", "source_id": "cutlass v4.2.1"},
        "vllm-flash-attn": {"from": "fetched", "source_id": "flash-attention newest",
                            "submodule_source_id": "cutlass v4.2.1"},
        "flashmla": {"from": "fetched", "source_id": "flashmla 2"},
    }
    fetched = checkout / ".deps" / "vllm-flash-attn-src"
    assert git(fetched, "rev-parse", "HEAD") == world.external_commit("vllm-flash-attn", "newest")
    assert git(checkout, "check-ignore", ".deps") == ".deps"
    _check_external_overrides(world, tmp_path, py, checkout, {**env, **build_env})


def _export_external_sources(world: TestWorld, into: Path) -> dict[str, str]:
    """Stage sources the way an installer would: a cutlass tag checkout, a flash-attention commit
    with its submodules, a FlashMLA `git archive` (no .git at all)."""
    into.mkdir()
    cutlass, fa, mla = into / "cutlass", into / "flash-attention", into / "FlashMLA"
    git(into, "clone", "-q", "--branch", "v4.1.0", world.external_url("cutlass"), str(cutlass))
    git(into, "clone", "-q", "--no-checkout", world.external_url("vllm-flash-attn"), str(fa))
    git(fa, "checkout", "-q", world.external_commit("vllm-flash-attn", "new"))
    git(fa, "-c", "protocol.file.allow=always", "submodule", "update", "-q", "--init", "--recursive")
    archive = subprocess.run(["git", "archive", world.external_commit("flashmla", "1")],
                             cwd=world.external_root / "vllm-project" / "FlashMLA", env=git_env(),
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tar.extractall(mla, filter="data")
        else:
            tar.extractall(mla)
    return {"VLLM_CUTLASS_SRC_DIR": str(cutlass), "VLLM_FLASH_ATTN_SRC_DIR": str(fa),
            "FLASH_MLA_SRC_DIR": str(mla)}


def _check_external_overrides(world: TestWorld, tmp_path: Path, py: Path, checkout: Path,
                              env: dict[str, str]) -> None:
    """setup.py takes each pin from its override variable when set, and fails clearly on a
    directory that is not a (complete) source tree."""

    def setup_py(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(py), "setup.py", "--version"], cwd=checkout,
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)

    staged = _export_external_sources(world, tmp_path / "staged")
    proc = setup_py(staged)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads((checkout / "vllm" / "_build_info.json").read_text())
    assert info["external_sources"] == {
        "cutlass": {"from": "override", "source_id": "cutlass v4.1.0"},
        "vllm-flash-attn": {"from": "override", "source_id": "flash-attention new",
                            "submodule_source_id": "cutlass v4.2.1"},
        "flashmla": {"from": "override", "source_id": "flashmla 1"},
    }
    # one override, the rest fetched (the .deps checkouts are reused); empty counts as unset
    proc = setup_py({"FLASH_MLA_SRC_DIR": staged["FLASH_MLA_SRC_DIR"], "VLLM_CUTLASS_SRC_DIR": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sources = json.loads((checkout / "vllm" / "_build_info.json").read_text())["external_sources"]
    assert {k: v["from"] for k, v in sources.items()} == {
        "cutlass": "fetched", "vllm-flash-attn": "fetched", "flashmla": "override"}
    # flash-attention without its csrc/cutlass submodule (vLLM issue 13424)
    no_sub = tmp_path / "fa-without-submodule"
    git(tmp_path, "clone", "-q", world.external_url("vllm-flash-attn"), str(no_sub))
    proc = setup_py({**staged, "VLLM_FLASH_ATTN_SRC_DIR": str(no_sub)})
    assert proc.returncode != 0
    assert "the git submodule csrc/cutlass is not checked out" in proc.stderr
    assert "13424" in proc.stderr
    # not a directory / not a source tree
    proc = setup_py({**staged, "VLLM_CUTLASS_SRC_DIR": str(tmp_path / "missing")})
    assert proc.returncode != 0 and "VLLM_CUTLASS_SRC_DIR=" in proc.stderr
    assert "is not a directory" in proc.stderr
    proc = setup_py({**staged, "FLASH_MLA_SRC_DIR": str(tmp_path / "staged")})
    assert proc.returncode != 0 and "flashmla: FLASH_MLA_SRC_DIR=" in proc.stderr
    assert "holds no SOURCE_ID" in proc.stderr


def _strip(world: TestWorld, tmp_path: Path, ref: str, script: str, *args: str) -> dict[str, str]:
    checkout = tmp_path / ref
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "clone", "-q", world.repo_url, str(checkout)], check=True, env=env)
    subprocess.run(["git", "checkout", "-q", ref], cwd=checkout, check=True, env=env)
    subprocess.run([sys.executable, script, *args], cwd=checkout, check=True,
                   capture_output=True)
    return {p: (checkout / p).read_text() for p in ("requirements/common.txt",
                                                   "requirements/cuda.txt", "pyproject.toml")}


def test_stripping_script_modes(world: TestWorld, tmp_path: Path) -> None:
    old = _strip(world, tmp_path, "v0.10.0", "use_existing_torch.py")
    assert "torch" not in "".join(old.values()).lower()
    assert "vllm-fake-dep-a" in old["requirements/common.txt"]
    tools = world.layout_commits["tools"]
    default = _strip(world, tmp_path, tools, "tools/use_existing_torch.py")
    assert "open-clip-torch-fake" not in default["requirements/common.txt"]
    assert "no-build-isolation-package" not in default["pyproject.toml"]
    prefix = _strip(world, tmp_path, "v0.20.0", "use_existing_torch.py", "--prefix")
    assert "open-clip-torch-fake" in prefix["requirements/common.txt"]
    assert "# Common runtime dependencies (some are needed by torch.compile)" in prefix[
        "requirements/common.txt"]
    assert "torch==" not in prefix["requirements/cuda.txt"]
    assert '"torch == ' not in prefix["pyproject.toml"]


def test_serve_command_prints_urls(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "vllm_lock_testworld", "serve",
                             str(tmp_path / "served")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline())
        assert fetch(urls["torch_nightly_index"] + "/torch/")[0] == 200
        ctx = ssl.create_default_context(cafile=urls["ca_cert"])
        assert fetch(urls["https_general_index"] + "/wheel/", context=ctx)[0] == 200
        assert urls["repo_url"].startswith("file://")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_fake_vllm_regular_wheel_at_tag(world: TestWorld, tmp_path: Path) -> None:
    """Non-editable build of the clean v0.32.0 checkout: version is the bare tag."""
    uv_bin = uv.find_uv_bin()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "VIRTUAL_ENV"))}
    env.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_PYTHON_DOWNLOADS="never",
               UV_NO_CONFIG="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1",
               VLLM_TARGET_DEVICE="empty")

    def run(*args: object, cwd: Path | None = None) -> str:
        proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    checkout = tmp_path / "vllm"
    run("git", "clone", "-q", "--branch", "v0.32.0", world.repo_url, checkout)
    venv = tmp_path / "venv"
    py = venv / "bin" / "python"
    run(uv_bin, "venv", "-q", "--python", sys.executable, venv)
    torch = world.nightly_versions(world.latest_consistent_date)["torch"]
    run(uv_bin, "pip", "install", "-q", "--python", py, "--index-url", world.general_index,
        "setuptools", "wheel")
    run(uv_bin, "pip", "install", "-q", "--python", py, "--no-deps",
        "--index-url", world.torch_nightly_index, f"torch=={torch}")
    run(uv_bin, "pip", "install", "-q", "--python", py, "--index-url", world.general_index,
        "--no-build-isolation", checkout)
    # like vLLM's, the CLI of an empty build cannot infer a device; the installed version is there
    cli = subprocess.run([str(venv / "bin" / "vllm"), "--version"], capture_output=True, text=True)
    assert cli.returncode != 0 and "Failed to infer device type" in cli.stderr
    assert run(py, "-c", "import importlib.metadata as m; print(m.version('vllm'))", cwd=tmp_path).strip() == "0.32.0"
    code = ("import importlib.resources as r, json; "
            "print(r.files('vllm').joinpath('_build_info.json').read_text())")
    info = json.loads(run(py, "-c", code, cwd=tmp_path))
    assert info["target_device"] == "empty" and info["extension"] == "none"
    assert {k: (v["from"], v["source_id"]) for k, v in info["external_sources"].items()} == {
        "cutlass": ("fetched", "cutlass v4.2.1"),
        "vllm-flash-attn": ("fetched", "flash-attention newest"),
        "flashmla": ("fetched", "flashmla 1"),
    }
    assert "site-packages" in run(py, "-c", "import vllm; print(vllm.__file__)", cwd=tmp_path)


def test_fetch_pypi_wheels_cache_and_offline_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_lock_testworld import pypi

    cache = pypi.fetch_pypi_wheels()  # already filled by the world: no download
    for w in pypi.PYPI_WHEELS:
        assert hashlib.sha256((cache / w.filename).read_bytes()).hexdigest() == w.sha256
    missing = pypi.PypiWheel("nothing-1.0-py3-none-any.whl", "0" * 64,
                             "http://127.0.0.1:9/nothing-1.0-py3-none-any.whl", None)
    monkeypatch.setattr(pypi, "PYPI_WHEELS", (missing,))
    with pytest.raises(pypi.PypiFetchError, match="nothing-1.0"):
        pypi.fetch_pypi_wheels(tmp_path / "empty")
