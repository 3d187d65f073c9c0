"""Built-in dataset layouts: every module in this package registers its layouts on import
(``mmkit.registry.register_layout``); ``mmkit.registry.load_plugins`` imports the package."""

from __future__ import annotations

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
