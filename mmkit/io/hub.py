"""Whether the Hugging Face hub can be reached, asked once per process before anything fetches
from it (``datasets`` hub ids, open_clip's ``hf-hub:`` models); without a network the hub's
offline mode is switched on, so cached files load and anything else fails at once."""

from __future__ import annotations

from typing import Any

_PROBE_SECONDS = 5.0
_probed: dict[str, str | None] = {}  # endpoint -> why it cannot be reached (None: it answered)


def hub_offline_reason() -> str | None:
    """``None`` when the Hugging Face hub can be used; else why not, with the hub's offline
    mode switched on for this process.

    Anything that fetches from the hub (``datasets``, open_clip's ``hf-hub:`` models) should
    ask this first. Offline mode is on when ``HF_HUB_OFFLINE`` says so; otherwise one ``HEAD``
    request to the hub endpoint (through ``huggingface_hub``'s own HTTP client, so proxies
    apply; at most ``_PROBE_SECONDS``, once per process) decides. Without that, ``datasets``
    and ``huggingface_hub`` retry every request with back-off, printing a warning each time,
    for about half a minute before they fail."""
    from huggingface_hub import constants

    if _offline_now(constants):
        _go_offline(constants)  # the variable may have been set after the libraries read it
        return "the Hugging Face hub is unreachable (offline mode: HF_HUB_OFFLINE is set)"
    endpoint = constants.ENDPOINT
    if endpoint not in _probed:
        _probed[endpoint] = _probe(endpoint)
    reason = _probed[endpoint]
    if reason is None:
        return None
    _go_offline(constants)
    return f"the Hugging Face hub ({endpoint}) is unreachable ({reason})"


def _offline_now(constants: Any) -> bool:
    import os

    if constants.HF_HUB_OFFLINE:
        return True
    flags = (os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(v.upper() in ("1", "ON", "YES", "TRUE") for v in flags)


def _probe(endpoint: str) -> str | None:
    """Why one HEAD request to ``endpoint`` got no HTTP answer (``None`` if it got one)."""
    import threading

    from huggingface_hub.utils import get_session

    outcome: dict[str, str | None] = {}

    def run() -> None:
        try:
            get_session().head(endpoint, timeout=_PROBE_SECONDS)
        except Exception as exc:  # httpx / OS errors of every kind: all mean "no answer"
            text = str(exc).strip().splitlines()
            outcome["reason"] = (text[0] if text else type(exc).__name__)[:200]
        else:
            outcome["reason"] = None

    thread = threading.Thread(target=run, name="mmkit-hub-probe", daemon=True)
    thread.start()
    thread.join(_PROBE_SECONDS + 1.0)  # a name lookup can outlast the HTTP timeout
    return outcome.get("reason", f"no answer within {_PROBE_SECONDS:g} s")


def _go_offline(constants: Any) -> None:
    """The hub's offline mode, for ``huggingface_hub``, ``datasets`` (now, or when it is
    imported later: it reads the variable then) and child processes."""
    import os
    import sys

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    config = sys.modules.get("datasets.config")
    if config is not None:
        config.HF_HUB_OFFLINE = True
        config.HF_DATASETS_OFFLINE = True
