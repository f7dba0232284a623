"""generation.py: every path of a generation from one object, the container beside --venv, and
the rules on where --venv and --src may be. Pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_lock.generation import Generation, GenerationContainer, generations_root, links_problem


def test_the_container_places_generations_beside_the_link(tmp_path: Path) -> None:
    container = GenerationContainer(venv_link=tmp_path / "vllm", src_link=tmp_path / "vllm_repo")
    assert container.root == tmp_path / "vllm.generations" == generations_root(tmp_path / "vllm")
    assert container.generation("abc") == Generation(root=tmp_path / "vllm.generations" / "abc")
    assert container.profile == container.root / "profile.json"
    assert container.install_lock == container.root / ".install.lock"


def test_a_generation_owns_every_path_install_writes() -> None:
    gen = Generation(root=Path("/opt/vllm.generations/0123456789abcdef"))
    assert gen.id == "0123456789abcdef"
    assert (gen.venv, gen.src, gen.receipt) == (gen.root / "venv", gen.root / "src", gen.root / "receipt.json")
    assert gen.python == gen.root / "venv" / "bin" / "python" and gen.vllm_cli == gen.venv_bin / "vllm"
    assert gen.install_log("20261120T100000Z") == gen.root / "logs" / "install-20261120T100000Z.log"
    assert (gen.wheels, gen.pylock, gen.dist) == (gen.root / "wheels", gen.root / "pylock.toml", gen.root / "dist")
    # the stamp sits beside its tree: verify reads the stamp staging wrote
    assert gen.external_tree("cutlass") == gen.root / "external" / "cutlass"
    assert gen.external_stamp("cutlass") == gen.root / "external" / "cutlass.commit"
    assert gen.external_partial("cutlass") == gen.root / "external" / ".cutlass.partial"
    assert (gen.rust_vendor, gen.cargo_home) == (gen.root / "rust" / "vendor", gen.root / "rust" / "cargo-home")
    # and a venv the links resolved to finds its generation back
    assert Generation.of_venv(gen.venv) == gen


def test_venv_and_src_side_by_side_is_fine() -> None:
    g = Path("/opt/vllm.generations")
    assert links_problem(venv_link=Path("/opt/vllm"), src_link=Path("/opt/vllm_repo"), generations=g) is None
    assert links_problem(venv_link=Path("/opt/vllm"), src_link=Path("/srv/vllm"), generations=g) is None
    # a shared prefix of the name is not "inside"
    assert links_problem(venv_link=Path("/opt/vllm"), src_link=Path("/opt/vllm2"), generations=g) is None


@pytest.mark.parametrize(
    ("venv", "src", "words"),
    [
        ("/opt/vllm", "/opt/vllm", "--venv and --src are the same path (/opt/vllm)"),
        ("/opt/vllm", "/opt/vllm/src", "--src /opt/vllm/src is inside --venv /opt/vllm"),
        ("/opt/x/vllm", "/opt/x", "--venv /opt/x/vllm is inside --src /opt/x"),
        ("/opt/vllm", "/opt/vllm.generations/abc/src", "--src /opt/vllm.generations/abc/src is inside the generations"),
        ("/opt/vllm", "/opt/vllm.generations", "--src /opt/vllm.generations is inside the generations"),
    ],
)
def test_overlapping_venv_and_src(venv: str, src: str, words: str) -> None:
    generations = Path(venv).with_name(Path(venv).name + ".generations")
    problem = links_problem(venv_link=Path(venv), src_link=Path(src), generations=generations)
    assert problem is not None and words in problem
