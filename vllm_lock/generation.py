"""Where an install lives: one `Generation` owns every path of one build, one
`GenerationContainer` the folder of generations beside `--venv` and the two links into it.
Pure: paths only (shell/generations.py does the file system work on them).

    <venv>.generations/                 GenerationContainer.root
        profile.json  .install.lock
        <generation id>/                Generation.root (build_identity.py names it)
            venv/  src/  receipt.json  logs/install-<UTC>.log  wheels/  pylock.toml  dist/
            external/<name>/  external/<name>.commit  rust/{vendor,cargo-home,bin,...}
            (src/: a substituted non-editable install's is a link to <cache>/sources/<key>)
    <venv>  -> <venv>.generations/<id>/venv     (--venv, a symlink)
    <src>   -> <venv>.generations/<id>/src      (--src, a symlink)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GENERATIONS_SUFFIX = ".generations"
RECEIPT_NAME = "receipt.json"
PROFILE_NAME = "profile.json"
INSTALL_LOCK_NAME = ".install.lock"


@dataclass(frozen=True, kw_only=True, slots=True)
class Generation:
    """One generation directory and everything install writes into it."""

    root: Path

    @classmethod
    def of_venv(cls, venv: Path) -> Generation:
        """The generation a (resolved) venv directory is the `venv` of."""
        return cls(root=venv.parent)

    @property
    def id(self) -> str:
        return self.root.name

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def venv_bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.venv_bin / "python"

    @property
    def vllm_cli(self) -> Path:
        """What a complete generation has and a damaged one may have lost."""
        return self.venv_bin / "vllm"

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def receipt(self) -> Path:
        """Written last: a generation without it is unfinished."""
        return self.root / RECEIPT_NAME

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def install_log(self, stamp: str) -> Path:
        return self.logs / f"install-{stamp}.log"

    @property
    def wheels(self) -> Path:
        """The locked wheels, staged from the cache."""
        return self.root / "wheels"

    @property
    def pylock(self) -> Path:
        return self.root / "pylock.toml"

    @property
    def dist(self) -> Path:
        """The built vLLM wheel (a non-editable install)."""
        return self.root / "dist"

    @property
    def external(self) -> Path:
        """The external CMake sources, one tree per source."""
        return self.root / "external"

    def external_tree(self, name: str) -> Path:
        return self.external / name

    def external_stamp(self, name: str) -> Path:
        """The commit a tree is staged at, written after the tree: no stamp, no trusted tree."""
        return self.external / f"{name}.commit"

    def external_partial(self, name: str) -> Path:
        return self.external / f".{name}.partial"

    @property
    def rust(self) -> Path:
        return self.root / "rust"

    @property
    def rust_vendor(self) -> Path:
        return self.rust / "vendor"

    @property
    def cargo_home(self) -> Path:
        return self.rust / "cargo-home"

    @property
    def rust_tools(self) -> Path:
        """rustc and cargo as the build runs them."""
        return self.rust / "bin"

    @property
    def refusing_tools(self) -> Path:
        """A rustc and cargo that refuse to run (no Rust frontend locked)."""
        return self.rust / "left-out"

    @property
    def empty_cargo_home(self) -> Path:
        return self.rust / "left-out-home"


def generations_root(venv_link: Path) -> Path:
    """`/opt/vllm` -> `/opt/vllm.generations`."""
    return venv_link.with_name(venv_link.name + GENERATIONS_SUFFIX)


@dataclass(frozen=True, kw_only=True, slots=True)
class GenerationContainer:
    """The generations of one `--venv`: their folder beside it, its history and install lock,
    and the `--venv`/`--src` links switched together into one of them."""

    venv_link: Path
    src_link: Path

    @property
    def root(self) -> Path:
        return generations_root(self.venv_link)

    def generation(self, generation_id: str) -> Generation:
        return Generation(root=self.root / generation_id)

    @property
    def profile(self) -> Path:
        """The history that rollback walks back, and the --src link of this --venv."""
        return self.root / PROFILE_NAME

    @property
    def install_lock(self) -> Path:
        return self.root / INSTALL_LOCK_NAME


def link_path_problem(flag: str, link: Path) -> str | None:
    """A link is replaced by name inside its directory, and its generations sit beside it: the
    root directory has neither a name nor a directory."""
    if not link.name:
        return f"{flag} {link} has no name to link (the root directory?): give a path such as /opt/vllm"
    return None


def links_problem(*, venv_link: Path, src_link: Path, generations: Path) -> str | None:
    """Can --venv and --src (paths with their directories resolved) live side by side? Each link
    is replaced wholesale on every switch, so neither may lie inside the other or inside the
    generations; None when they can."""
    if venv_link == src_link:
        return f"--venv and --src are the same path ({venv_link}): give each its own"
    pairs = (("--venv", venv_link, "--src", src_link), ("--src", src_link, "--venv", venv_link))
    for outer_flag, outer, inner_flag, inner in pairs:
        if inner.is_relative_to(outer):
            return f"{inner_flag} {inner} is inside {outer_flag} {outer}: put them side by side"
    for flag, link in (("--venv", venv_link), ("--src", src_link)):
        if link.is_relative_to(generations):
            return f"{flag} {link} is inside the generations directory {generations}"
        if generations.is_relative_to(link):
            return f"{flag} {link} would contain the generations directory {generations}"
    return None
