"""``image_text.py`` with one training factor switched that no config key reaches, for the
one-factor-at-a-time comparison of issue 18 (``benchmarks/RESULTS-mm.md``).

- ``--batches random``: batches drawn as before issue 18 (a random caption per image, a plain
  shuffle, so a caption may occur twice in a batch); ``distinct`` (the default) is mmkit's;
  ``groups``: no two images that share a caption text in a batch
  (``benchmarks/batch_groups.py``).
- ``--decay all-matrices``: weight decay on every parameter of 2 or more dimensions, token and
  position embeddings included, as before issue 18; ``matrices`` (the default) is mmkit's.

Everything else (``--set``, seeds, JSON) is ``image_text.py``'s:

    python -m benchmarks.image_text_factors --batches random [--set key=value ...] [--json]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks import image_text


def patch(batches: str, decay: str) -> None:
    from mmkit.engine import optim
    from mmkit.pipelines import mm

    if batches == "groups":
        from benchmarks.batch_groups import group_batches
        from mmkit.tasks import contrastive

        contrastive.distinct_batches = group_batches  # type: ignore[assignment]
    if batches == "random":
        pairs = mm.CaptionPairs

        def random_pairs(*args: Any, **kwargs: Any) -> Any:
            return pairs(*args, **{**kwargs, "batch_size": 1})  # blocks of 1: no constraint

        mm.CaptionPairs = random_pairs  # type: ignore[assignment]
    if decay == "all-matrices":

        def groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
            params = [p for p in model.parameters() if p.requires_grad]
            return [
                {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
            ]

        optim.param_groups = groups  # type: ignore[assignment]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--batches", choices=("distinct", "random", "groups"), default="distinct")
    parser.add_argument("--decay", choices=("matrices", "all-matrices"), default="matrices")
    args, rest = parser.parse_known_args(argv)
    patch(args.batches, args.decay)
    return image_text.main(rest, {"batches": args.batches, "decay": args.decay})


if __name__ == "__main__":
    sys.exit(main())
