"""Progress events: the library reports long work here; the CLI decides how to show it."""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    """Receives progress of long work. The CLI renders it with rich; the default drops it."""

    def start(self, task: str, total: int | None) -> None:
        """A new phase begins (e.g. ``"prepare"``, ``"epoch 3/20"``) with ``total`` steps."""

    def advance(self, n: int = 1, **fields: Any) -> None:
        """``n`` more steps done; ``fields`` are live numbers such as the running loss."""

    def end(self, **summary: Any) -> None:
        """The phase is over; ``summary`` holds its result (e.g. validation metrics)."""

    def message(self, text: str) -> None:
        """A one-line note for the user (e.g. a skipped file)."""


class NullProgress:
    """Drops every event (library use, ``--json``)."""

    def start(self, task: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def end(self, **summary: Any) -> None:
        pass

    def message(self, text: str) -> None:
        pass
