"""Generate the embedded image-text demo set in ``examples/mm/data/``.

    python -m examples.mm.make_data [--out DIR] [--count N]

Pillow scenes (a shape of a colour at a position, sometimes two) with captions that are exactly
true of them, as ``data/captions.csv`` (``image,caption,split,label``; two captions per image,
the label is the shape) and ``data/images/scene_NNNN.{jpg,png}``, split 75/10/15 into
train/validation/test. Deterministic: the same command always writes the same files.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from tests.media.image_layouts import write_csv_manifest
from tests.media.images import write_scene_images

COUNT = 560
SEED = 2024
SIZES = ((64, 64), (64, 64), (80, 64), (64, 72))


def make_demo_data(out: Path, count: int = COUNT) -> dict[str, int]:
    """Write the demo set under ``out`` (replacing an earlier one); images per split."""
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as tmp:
        records = write_scene_images(
            tmp, count, seed=SEED, sizes=SIZES, formats=("jpg",) * 5 + ("png",)
        )
        write_csv_manifest(out, records, with_label=True)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.split] = counts.get(r.split, 0) + 1
    (out / "README.md").write_text(
        "# Image-text demo data\n\n"
        "Made by `python -m examples.mm.make_data`: Pillow scenes whose captions are exactly true\n"
        "(shape x colour x position, some with two objects). `captions.csv` has one row per\n"
        "caption: `image,caption,split,label` (label = the shape, for zero-shot accuracy).\n\n"
        + "".join(f"- {split}: {n} images\n" for split, n in counts.items())
    )
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--count", type=int, default=COUNT)
    args = parser.parse_args()
    counts = make_demo_data(args.out, args.count)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {sum(counts.values())} images {counts} to {args.out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
