"""The package set through `uv pip compile`: one synthetic project, uv's pylock back, or uv's
failure classified (vllm_lock.uv_errors)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from vllm_lock import resolution, torch_family, uv_errors
from vllm_lock.actions.resolve.request import ResolveRequest
from vllm_lock.actions.resolve.source import SourceFacts
from vllm_lock.model import Target
from vllm_lock.progress import Reporter
from vllm_lock.shell import uv as uv_shell


def run_compile(
    request: ResolveRequest, target: Target, source: SourceFacts, *, torch_pins: Sequence[str],
    routed: frozenset[str], left_out: Sequence[str], reporter: Reporter,
) -> tuple[bool, str]:
    """(True, the pylock) or (False, uv's output)."""
    triton = torch_family.TRITON[request.torch_channel]
    requirements = resolution.compile_requirements(source.runtime, source.build, torch_pins, triton, left_out)
    with tempfile.TemporaryDirectory(prefix="vllm-lock-compile-") as tmp:
        project = Path(tmp) / "pyproject.toml"
        project.write_text(resolution.synthetic_project(requirements, request.torch_index_url, routed))
        output = Path(tmp) / "pylock.toml"
        argv = uv_shell.compile_argv(
            project=project,
            output=output,
            python=target.python,
            platform=target.platform,
            default_index=request.general_index,
            interpreter=sys.executable or None,  # this process's own: nothing to discover
        )
        result = uv_shell.run_compile(argv, cwd=Path(tmp), cache=request.cache, log=reporter.log,
                                      indexes=(request.general_index, request.torch_index_url))
        return (True, output.read_text()) if result.ok else (False, result.output)


def compile_set(
    request: ResolveRequest, target: Target, source: SourceFacts, *, torch_pins: Sequence[str],
    routed: frozenset[str], left_out: Sequence[str], reporter: Reporter,
) -> str:
    """The pylock; uv's failure as the error uv_errors says."""
    ok, output = run_compile(request, target, source, torch_pins=torch_pins, routed=routed, left_out=left_out,
                             reporter=reporter)
    if not ok:
        raise uv_errors.compile_error(output, torch_pins, target, routed)
    return output
