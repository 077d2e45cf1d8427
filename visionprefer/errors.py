"""Exceptions raised by visionprefer.

Every error a user can fix derives from :class:`VisionPreferError`; the CLI prints its message on one
line and exits non-zero. Each subclass also inherits the matching built-in so that callers may catch
either::

    VisionPreferError
    ├── ConfigError(ValueError)          bad config file, key, type or value
    ├── SourceError(ValueError)          a prompt source that cannot be read
    ├── StageOrderError(RuntimeError)    a stage whose inputs are missing
    ├── RunDirError(RuntimeError)        a run directory that is missing or unusable
    ├── ModelLoadError(OSError)          a model that cannot be found or loaded
    ├── BudgetExceeded(RuntimeError)     a spending limit reached (the stage stops cleanly)
    └── RanksTimedOut(TimeoutError)      a rank waited for the others longer than the process group allows
"""

from __future__ import annotations


class VisionPreferError(Exception):
    """Root of every error visionprefer raises on purpose."""

    exit_code = 2


class ConfigError(VisionPreferError, ValueError):
    """The configuration is missing, malformed, or names an unknown key, type or value."""


class SourceError(VisionPreferError, ValueError):
    """A prompt source cannot be read as a whole (a bad line is a per-item failure instead)."""


class StageOrderError(VisionPreferError, RuntimeError):
    """A stage was run before the stage that produces its inputs."""


class RunDirError(VisionPreferError, RuntimeError):
    """A run directory is missing, or is not a visionprefer run directory."""


class ModelLoadError(VisionPreferError, OSError):
    """A model id or path cannot be resolved or loaded."""


class BudgetExceeded(VisionPreferError, RuntimeError):
    """A configured spending limit would be exceeded; work done so far is kept."""

    exit_code = 3


class RanksTimedOut(VisionPreferError, TimeoutError):
    """Under a launcher, a rank waited at a barrier longer than the process group's timeout."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): what one-line
    errors quote of a library's multi-line one."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
