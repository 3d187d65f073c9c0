"""Regenerate ``examples/video/data``: the small motion-direction set of ``mmkit demo``.

An object (random shape, colour, size and speed) moves left, right, up or down over a textured
scene; one frame cannot tell the direction. Scenes s0-s3 are train, s4 val, s5 test, so the demo
evaluates on backgrounds never seen in training. Clips are 16 frames of 64x64 at 12 fps, h264 mp4,
encoded by the ffmpeg that imageio-ffmpeg ships.

    python -m examples.video.make_data
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.media.video import make_motion_set
from tests.media.video_layouts import write_folder_layout

OUT = Path(__file__).resolve().parent / "data"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_motion_set(Path(tmp) / "clips", 24, seed=7, num_frames=16, size=64)
        if OUT.exists():
            shutil.rmtree(OUT)
        write_folder_layout(OUT, clips)
    files = list(OUT.rglob("*.mp4"))
    size = sum(f.stat().st_size for f in files)
    print(f"{len(files)} clips, {size / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
