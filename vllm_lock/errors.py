"""One exception hierarchy; each branch carries its exit code, and exit_code() is the only mapping
from a failure to the code a command exits with (docs/error-contract.md)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    DIFFERENT = 1  # verify found drift / diff found differences
    USAGE = 2  # bad command-line input
    LOCK_INVALID = 3  # malformed lock, unknown version, content hash mismatch
    UNREACHABLE = 4  # repository or index unreachable after retries
    RESOLUTION = 5  # unknown ref, no nightly, unknown torch version, companions mismatch
    INSTALL = 6  # install or build failed
    PREFLIGHT = 7  # machine does not match: platform, python, nvcc, disk
    INTEGRITY = 8  # bytes do not match the lock
    OUTPUT = 9  # cannot write the output
    INTERNAL = 70  # a bug: an exception no rule expected (EX_SOFTWARE); one line, never a traceback
    INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C
    STDOUT_CLOSED = 141  # 128 + SIGPIPE: the reader of stdout went away (not a failure: nothing on stderr)


class VllmLockError(Exception):
    """Root of every error vllm-lock reports; str() is the one-line message."""

    exit_code: ExitCode = ExitCode.USAGE


class UsageError(VllmLockError):
    exit_code = ExitCode.USAGE


class LockInvalidError(VllmLockError):
    exit_code = ExitCode.LOCK_INVALID


class UnreachableError(VllmLockError):
    exit_code = ExitCode.UNREACHABLE


class ResolutionError(VllmLockError):
    exit_code = ExitCode.RESOLUTION


class UnknownRefError(ResolutionError):
    pass


class NoNightlyError(ResolutionError):
    pass


class UnknownTorchVersionError(ResolutionError):
    pass


class CompanionMismatchError(ResolutionError):
    pass


class InstallError(VllmLockError):
    exit_code = ExitCode.INSTALL


class BuildError(InstallError):
    pass


class PreflightError(VllmLockError):
    exit_code = ExitCode.PREFLIGHT


class IntegrityError(VllmLockError):
    exit_code = ExitCode.INTEGRITY


class OutputError(VllmLockError):
    exit_code = ExitCode.OUTPUT


class NotTestedError(UsageError):
    """No passing test receipt for the lock to promote (exit 2, a usage error: run `test` first)."""


class CacheEntryError(IntegrityError):
    """A binary cache entry refused: malformed, unsigned, untrusted, or not its wheel's bytes."""


class CacheKeyError(UsageError):
    """A cache signing or trusted key that is not `name:base64` of an ed25519 key."""


class CacheUnreachableError(UnreachableError):
    """A binary cache that did not answer within its bounds (or refused the request)."""


class SubstituteOnlyError(InstallError):
    """--substitute-only, and no configured cache gave a verified wheel of the build identity."""


class BundleError(IntegrityError):
    """An offline bundle that is unreadable, unsafe, or does not hold what it claims (exit 8)."""


class WrongBundleError(UsageError):
    """An intact bundle of another lock than the one being installed (exit 2)."""


# The commands whose exit 1 is an answer, not a failure (verify: drift; diff: different). Scripts
# read 0 and 1 as the answer, so every failure of theirs exits 2, whatever its class (as
# diff(1) and cmp(1) do): a lock that does not read is never taken for "different".
ANSWERING_COMMANDS = frozenset({"verify", "diff"})


def exit_code_for(failure: BaseException, *, command: str) -> ExitCode:
    """The code `vllm-lock <command>` exits with when `failure` ends it."""
    if isinstance(failure, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if command in ANSWERING_COMMANDS:
        return ExitCode.USAGE
    return failure.exit_code if isinstance(failure, VllmLockError) else ExitCode.INTERNAL

