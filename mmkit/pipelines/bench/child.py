"""Work the benchmark runs in a child process: ``python -m mmkit.pipelines.bench.child JOB``
reads the JSON job file and prints one JSON result on stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    job = json.loads(Path(argv[0]).read_text())
    import mmkit.pipelines.bench.peers as peers

    result = getattr(peers, job["kind"])(job)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
