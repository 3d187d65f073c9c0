"""Generate a real-size data set in its real layout: Speech Commands v0.02, a quarter of UCF101
or COCO-style captions, at a fraction of full size (see mmkit/pipelines/bench/scale_data.py).

    python benchmarks/scale_data.py --kind speech_commands --fraction 1/64 --workers 2

Prints one JSON line: where the data set is, its files and how fast they were written. Asking
again with the same kind, fraction and seed returns at once (``"cached": true``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from mmkit.errors import UserInputError
from mmkit.pipelines.bench.scale_data import KINDS, generate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--fraction", default="1", help="1/64, 1/16, 1/4 or 1 (any in (0, 1])")
    parser.add_argument("--out", default=None, help="default: $MMKIT_CACHE/scale/<kind>-...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    try:
        data = generate(args.kind, args.fraction, args.out, seed=args.seed, workers=args.workers)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(data.to_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
