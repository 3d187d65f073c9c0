"""mmkit: audio, video and image-text deep-learning experiments from one command line."""

from __future__ import annotations

from mmkit import runtime

runtime.configure()  # before anything imports torch: OpenMP reads its settings once

from mmkit.registry import (  # noqa: E402 - after runtime.configure()
    create_backbone,
    create_preprocessor,
    list_plugins,
    register_backbone,
    register_layout,
    register_preprocessor,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "create_backbone",
    "create_preprocessor",
    "list_plugins",
    "load_checkpoint",
    "register_backbone",
    "register_layout",
    "register_preprocessor",
]


def load_checkpoint(path: str, device: str = "cpu"):
    """Load a checkpoint (run dir or checkpoint dir) and rebuild its model from ``config.json``."""
    from mmkit.tasks import load_checkpoint as _load

    return _load(path, device=device)
