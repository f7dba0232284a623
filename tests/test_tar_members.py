"""The tree export's own check of archive members, used where Python lacks tarfile's data filter
(Debian bookworm's 3.11.2 inside Phoenix containers)."""

from __future__ import annotations

import tarfile

import pytest

from vllm_lock.shell.git import _check_member


def member(name: str, link: str | None = None, *, symlink: bool = True) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type = tarfile.SYMTYPE if symlink else tarfile.LNKTYPE
        info.linkname = link
    return info


@pytest.mark.parametrize(
    ("info", "safe"),
    [
        (member("include/cutlass/version.h"), True),
        (member("a/b", "../c"), True),  # a relative symlink inside the tree
        (member("a/b", "a/c", symlink=False), True),
        (member("../x"), False),
        (member("/etc/x"), False),
        (member("a/b", "../../c"), False),
        (member("a", "/etc/passwd"), False),
        (member("a/b", "../c", symlink=False), False),  # hard-link targets are relative to the root
    ],
)
def test_members_leaving_the_tree_are_refused(info: tarfile.TarInfo, safe: bool) -> None:
    if safe:
        _check_member(info)
    else:
        with pytest.raises(ValueError, match="leaves the tree"):
            _check_member(info)
