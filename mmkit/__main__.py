from __future__ import annotations

from mmkit.cli.entry import run

run()
