"""The test world's package indexes: simple pages over HTTP and HTTPS, valid wheels, the nightly
companion scenarios, the request log, and the PyPI wheels it serves."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import ssl
import urllib.error
import zipfile
from pathlib import Path

import pytest
from testworld_support import fetch, links, metadata, requires, ymd

from vllm_lock_testworld import TestWorld

PEP691 = "application/vnd.pypi.simple.v1+json"


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
            assert f"torch-2.10.0.dev{ymd(d)}+cu128-{py}-{py}-manylinux_2_28_x86_64.whl" in names
    arm = [n for n in names if "aarch64" in n]
    assert arm and all(ymd(world.aarch64_date) in n for n in arm)
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
    fn = f"torch-2.10.0.dev{ymd(d)}+cu128-cp312-cp312-manylinux_2_28_x86_64.whl"
    data = fetch(world.file_url(fn))[2]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        infos = zf.infolist()
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
        record = zf.read(f"torch-2.10.0.dev{ymd(d)}+cu128.dist-info/RECORD").decode()
        checked = set()
        for line in record.splitlines():
            path, digest, size = line.rsplit(",", 2)
            if not digest:
                continue
            blob = zf.read(path)
            want = base64.urlsafe_b64encode(hashlib.sha256(blob).digest()).rstrip(b"=").decode()
            assert digest == "sha256=" + want and int(size) == len(blob)
            checked.add(path)
        assert checked == {i.filename for i in infos} - {f"torch-2.10.0.dev{ymd(d)}+cu128.dist-info/RECORD"}
        assert "Tag: cp312-cp312-manylinux_2_28_x86_64" in zf.read(
            f"torch-2.10.0.dev{ymd(d)}+cu128.dist-info/WHEEL").decode()
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
    def tv(day: dt.date) -> str:
        return f"2.10.0.dev{ymd(day)}+cu128"
    broken, lag = world.broken_companion_date, world.lagging_companion_date
    assert broken in world.nightly_dates and lag in world.nightly_dates
    assert tv(broken) not in vision.values() and tv(broken) not in audio.values()
    assert ymd(lag) not in vision
    assert vision[ymd(lag + dt.timedelta(days=1))] == tv(lag)
    assert audio[ymd(lag)] == tv(lag)
    consistent = [d for d in world.nightly_dates
                  if tv(d) in vision.values() and tv(d) in audio.values()]
    assert world.latest_consistent_date == max(consistent)
    assert max(world.nightly_dates) > world.latest_consistent_date
    versions = world.nightly_versions(lag)
    assert versions["torchvision"] == f"0.25.0.dev{ymd(lag + dt.timedelta(days=1))}+cu128"
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
