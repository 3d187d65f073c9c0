"""Exception hierarchy. Every error a user can cause is an :class:`MmkitError`.

The CLI turns an ``MmkitError`` into one line on stderr and exit code 1; anything else is a bug and
keeps its traceback (``MMKIT_DEBUG=1`` shows the traceback for ``MmkitError`` too).
"""

from __future__ import annotations


class MmkitError(Exception):
    """Base class of every error mmkit raises on purpose."""


class UserInputError(MmkitError, ValueError):
    """A bad option, config value, path or dataset description."""


class MediaError(MmkitError):
    """A media file that cannot be read or decoded. ``reason`` is the cause alone (what a
    prepared store lists for a skipped file), the message names the file too."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message

    @classmethod
    def cannot_decode(cls, name: object, reason: str) -> MediaError:
        return cls(f"cannot decode {name}: {reason}", reason=reason)


class UnknownPluginError(UserInputError, KeyError):
    """A backbone or preprocessor name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain sentence
        return str(self.args[0]) if self.args else ""


class CheckpointError(MmkitError):
    """A checkpoint directory that is missing, incomplete or from an incompatible version."""


class RanksDisagree(UserInputError):
    """The processes of one torchrun job were started with different options. Every rank
    raises it and exits 1; rank 0 alone prints it."""


class PeerLost(MmkitError):
    """Another process of the torchrun job died or stopped answering (exit 1, one line). The
    process group is broken by then, so the CLI leaves at once after that line: tearing the
    group down normally may wait on the lost peer."""


class TrainingInterrupted(MmkitError):
    """Raised after an interrupt once ``last/`` holds everything needed to resume (exit 130)."""


class ExportError(MmkitError):
    """A model (or a part of it) that cannot be exported, or whose export does not match it."""
