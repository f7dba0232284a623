"""The caller's git variables that say where a repository is: dropped before anything runs.
Kept apart from shell/git.py so that the CLI drops them at start without importing git's runner."""

from __future__ import annotations

import os

# where git finds a repository, an index, objects: set in a git hook's environment (or by the
# user), they would turn a mirror's `fetch --force --prune` onto the caller's own repository and
# a build's `git describe` onto the wrong tree. Every git of ours finds its repository by
# --git-dir or its working directory instead.
REPOSITORY_ENV = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX", "GIT_SHALLOW_FILE", "GIT_GRAFT_FILE",
    "GIT_IMPLICIT_WORK_TREE", "GIT_QUARANTINE_PATH", "GIT_REPLACE_REF_BASE", "GIT_NO_REPLACE_OBJECTS",
)


def forget_callers_repository() -> None:
    """Drop REPOSITORY_ENV from this process's environment (for gitpython's git and every
    program a build runs, not only `run`'s)."""
    for name in REPOSITORY_ENV:
        os.environ.pop(name, None)
