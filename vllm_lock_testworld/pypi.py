"""Real pure-python wheels from PyPI, fetched once into a cache and verified."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PypiWheel:
    """One pinned wheel on files.pythonhosted.org."""

    filename: str
    sha256: str
    url: str
    requires_python: str | None


_FH = "https://files.pythonhosted.org/packages"
PYPI_WHEELS: tuple[PypiWheel, ...] = (
    PypiWheel(
        "setuptools-79.0.1-py3-none-any.whl",
        "e147c0549f27767ba362f9da434eab9c5dc0045d5304feb602a0af001089fc51",
        f"{_FH}/0d/6d/b4752b044bf94cb802d88a888dc7d288baaf77d7910b7dedda74b5ceea0c/setuptools-79.0.1-py3-none-any.whl",
        ">=3.9",
    ),
    PypiWheel(
        "wheel-0.45.1-py3-none-any.whl",
        "708e7481cc80179af0e556bbf0cc00b8444c7321e2700b8d8580231d13017248",
        f"{_FH}/0b/2c/87f3254fd8ffd29e4c02732eee68a83a1d3c346ae39bc6822dcbcb697f2b/wheel-0.45.1-py3-none-any.whl",
        ">=3.8",
    ),
    PypiWheel(
        "packaging-25.0-py3-none-any.whl",
        "29572ef2b1f17581046b3a2227d5c611fb25ec70ca1ba8554b24b0e69331a484",
        f"{_FH}/20/12/38679034af332785aac8774540895e234f4d07f7545804097de4b666afd8/packaging-25.0-py3-none-any.whl",
        ">=3.8",
    ),
    PypiWheel(
        "setuptools_scm-8.3.1-py3-none-any.whl",
        "332ca0d43791b818b841213e76b1971b7711a960761c5bea5fc5cdb5196fbce3",
        f"{_FH}/ab/ac/8f96ba9b4cfe3e4ea201f23f4f97165862395e9331a424ed325ae37024a8/setuptools_scm-8.3.1-py3-none-any.whl",
        ">=3.8",
    ),
    PypiWheel(
        "typing_extensions-4.15.0-py3-none-any.whl",
        "f0fa19c6845758ab08074a0cfa8b7aecb71c999ca73d62883bc25cc018c4e548",
        f"{_FH}/18/67/36e9267722cc04a6b9f15c7f3441c2363321a3ea07da7ae0c0707beb2a9c/typing_extensions-4.15.0-py3-none-any.whl",
        ">=3.9",
    ),
    PypiWheel(
        "filelock-3.20.0-py3-none-any.whl",
        "339b4732ffda5cd79b13f4e2711a31b0365ce445d95d243bb996273d072546a2",
        f"{_FH}/76/91/7216b27286936c16f5b4d0c530087e4a54eead683e6b0b73dd0c64844af6/filelock-3.20.0-py3-none-any.whl",
        ">=3.10",
    ),
    PypiWheel(
        "tomli-2.3.0-py3-none-any.whl",
        "e95b1af3c5b07d9e643909b5abbec77cd9f1217e6d0bca72b0234736b9fb1f1b",
        f"{_FH}/77/b8/0135fadc89e73be292b473cb820b4f5a08197779206b33191e801feeae40/tomli-2.3.0-py3-none-any.whl",
        ">=3.8",
    ),
    # the Rust frontend's build requirement (setuptools-rust>=1.9.0, as vLLM 0.33.0) and its dependency
    PypiWheel(
        "setuptools_rust-1.13.0-py3-none-any.whl",
        "666439c4d90e968bb625bcf87ec0aa02b4f49e599d2f5dc255c633a04e8eca99",
        f"{_FH}/0b/80/909e46e684e47b116ed145bf2a1a8f5f7c9d90e8c3f8f7fce6a529c0068d/setuptools_rust-1.13.0-py3-none-any.whl",
        ">=3.9",
    ),
    PypiWheel(
        "semantic_version-2.10.0-py2.py3-none-any.whl",
        "de78a3b8e0feda74cabc54aab2da702113e33ac9d9eb9d2389bcf1f58b7d9177",
        f"{_FH}/6a/23/8146aad7d88f4fcb3a6218f41a60f6c2d4e3a72de72da1825dc7c8f7877c/semantic_version-2.10.0-py2.py3-none-any.whl",
        ">=2.7",
    ),
)


class PypiFetchError(RuntimeError):
    """A pinned PyPI wheel is missing from the cache and could not be downloaded."""


def default_cache_dir() -> Path:
    """$VLLM_LOCK_TESTWORLD_CACHE or ~/.cache/vllm-lock/testworld-pypi."""
    env = os.environ.get("VLLM_LOCK_TESTWORLD_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "vllm-lock" / "testworld-pypi"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_pypi_wheels(cache_dir: Path | None = None) -> Path:
    """Ensure every pinned wheel is in cache_dir with the right sha256; return the dir."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for wheel in PYPI_WHEELS:
        target = cache / wheel.filename
        if target.is_file() and _sha256_file(target) == wheel.sha256:
            continue
        tmp = target.with_name(target.name + f".part{os.getpid()}")
        try:
            with urllib.request.urlopen(wheel.url, timeout=60) as resp:
                data = resp.read()
        except (urllib.error.URLError, OSError) as exc:
            raise PypiFetchError(
                f"cannot download {wheel.filename} from {wheel.url} ({exc}); the test world "
                f"needs it once in {cache} (set VLLM_LOCK_TESTWORLD_CACHE to a pre-filled dir "
                "when offline)"
            ) from exc
        got = hashlib.sha256(data).hexdigest()
        if got != wheel.sha256:
            raise PypiFetchError(
                f"{wheel.filename}: sha256 {got} != pinned {wheel.sha256}"
            )
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return cache
