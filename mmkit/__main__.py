from __future__ import annotations

from mmkit.cli.main import main

main()
