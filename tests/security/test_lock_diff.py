"""Issue 12, item 5: `diff` hides no change. Two real locks that differ in one field only (hash
recomputed): the real CLI exits 1 and names the field in text, json and markdown; a changed source
location is called out, and the build identity line does not claim that nothing matters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vllm_lock_testworld import TestWorld

from .conftest import Sandbox


def _diff(box: Sandbox, a: dict[str, Any], b: dict[str, Any], fmt: str = "text") -> tuple[int, str]:
    result = box.run("diff", str(box.write(a, "a")), str(box.write(b, "b")), "--format", fmt)
    assert result.stderr == "", result.stderr
    return result.returncode, result.stdout


def _general_package(data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return next((i, p) for i, p in enumerate(data["packages"]) if p["source"] == "general")


def test_a_package_url_changed_alone_is_a_difference_called_out(sandbox: Sandbox) -> None:
    a, b = sandbox.data(), sandbox.data()
    i, package = _general_package(b)
    wheel = package["wheels"][0]
    wheel["url"] = wheel["url"].replace("/files/", "/elsewhere/")
    key = f"packages[{package['name']}].wheels[{wheel['filename']}].url"
    code, out = _diff(sandbox, a, b)
    assert code == 1
    assert ": different" in out.splitlines()[0]
    assert out.splitlines()[1].startswith("sources   1 changed")
    assert f"! {key}: " in out and "/elsewhere/" in out
    assert "the same build serves both" not in out
    code, out = _diff(sandbox, a, b, "json")
    data = json.loads(out)
    assert code == 1 and data["equal"] is False
    assert [c["key"] for c in data["sources"]] == [key]
    code, out = _diff(sandbox, a, b, "markdown")
    assert code == 1 and "**Source locations changed (1)**" in out and f"`{key}`" in out


def test_a_package_filename_and_size_changed_are_named(sandbox: Sandbox) -> None:
    a, b = sandbox.data(), sandbox.data()
    _, package = _general_package(b)
    wheel = package["wheels"][0]
    # another wheel of the same version (a py2.py3 tag), on the same host
    original = wheel["filename"]
    retagged = original.replace("-py3-none-any.whl", "-py2.py3-none-any.whl")
    assert retagged != original
    wheel["url"] = wheel["url"].rsplit("/", 1)[0] + "/" + retagged
    wheel["filename"] = retagged
    wheel["size"] += 1
    code, out = _diff(sandbox, a, b)
    assert code == 1
    name = package["name"]
    for leaf in ("filename", "url"):  # a wheel row is keyed by its file name: one gone, one new
        assert f"! packages[{name}].wheels[{original}].{leaf}: " in out
        assert f"! packages[{name}].wheels[{retagged}].{leaf}: (none) -> " in out
    assert f"packages[{name}].wheels[{retagged}].size: (none) -> {wheel['size']}" in out
    assert f"- {original}" in out and f"+ {retagged}" in out  # the package line names both wheels


def test_a_changed_vllm_url_is_called_out_not_hidden_behind_the_identity(sandbox: Sandbox, world: TestWorld) -> None:
    a, b = sandbox.data(), sandbox.data()
    b["inputs"]["vllm"]["original"]["url"] = "https://github.com/someone-else/vllm.git"
    code, out = _diff(sandbox, a, b)
    assert code == 1
    assert "! inputs.vllm.original.url: " in out and "someone-else" in out
    assert "build identity unchanged" in out and "fetched from changed sources" in out


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [("inputs.torch.original", "index", "http://127.0.0.1:1/other/simple"),
     ("external-sources.0", "repository", "https://example.org/cutlass.git")],
)
def test_changed_index_or_external_repository_is_a_source_change(sandbox: Sandbox, section: str, field: str,
                                                                  value: str) -> None:
    a, b = sandbox.data(), sandbox.data()
    node: Any = b
    for part in section.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[field] = value
    if field == "index":  # torch packages live on the index's host: move them with it
        for p in b["packages"]:
            if p["source"] == "torch":
                for w in p["wheels"]:
                    w["url"] = "http://127.0.0.1:1/other/" + w["url"].rsplit("/", 1)[-1]
    code, out = _diff(sandbox, a, b)
    assert code == 1
    sources = out.split("\nvLLM ")[0]
    assert value in sources, out


def test_identical_locks_still_equal(sandbox: Sandbox) -> None:
    code, out = _diff(sandbox, sandbox.data(), sandbox.data())
    assert code == 0 and ": equal" in out.splitlines()[0] and "sources" not in out


def test_a_left_out_torch_member_alone_is_named_in_text_and_markdown(sandbox: Sandbox) -> None:
    a, b = sandbox.data(), sandbox.data()
    b["inputs"]["torch"]["locked"]["left-out"] = ["torchcodec"]
    for fmt in ("text", "markdown", "json"):
        code, out = _diff(sandbox, a, b, fmt)
        assert code == 1, out
        assert "inputs.torch.locked.left-out" in out and "torchcodec" in out, (fmt, out)


@pytest.mark.parametrize("name", ["numpy", "locked-torch-member"])
def test_left_out_is_only_an_unlocked_torch_family_name(sandbox: Sandbox, name: str) -> None:
    """A left-out name is expected to be unmet by install and verify: anything but an unlocked
    torch*/pytorch-* name would hide a missing dependency, so the lock is refused on read."""
    from .conftest import refused

    data = sandbox.data()
    if name == "locked-torch-member":
        name = next(p["name"] for p in data["packages"] if p["name"].startswith("torch") and p["name"] != "torch")
        data["inputs"]["torch"]["locked"]["companions"] = [
            c for c in data["inputs"]["torch"]["locked"].get("companions", []) if c["name"] != name]
    data["inputs"]["torch"]["locked"]["left-out"] = [name]
    line = refused(sandbox.run("show", str(sandbox.write(data))), "inputs.torch.locked.left-out[0]")
    assert name in line
