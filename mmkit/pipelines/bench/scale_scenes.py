"""The drawn-scene scale data sets of :mod:`.scale_data`: a quarter of UCF101 (a shape moving over
a blocky background per class, XVID in AVI) and COCO-2017-style captions (drawn scenes, five
captions each). The layouts and counts are described in :mod:`.scale_data`."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from mmkit.pipelines.bench.scale_jobs import chunks, map_jobs, scaled

UCF_CLASSES = (
    "ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching",
    "BaseballPitch", "Basketball", "BasketballDunk", "BenchPress", "Biking", "Billiards",
    "BlowDryHair", "BlowingCandles", "BodyWeightSquats", "Bowling", "BoxingPunchingBag",
    "BoxingSpeedBag", "BreastStroke", "BrushingTeeth", "CleanAndJerk", "CliffDiving",
    "CricketBowling", "CricketShot", "CuttingInKitchen", "Diving", "Drumming", "Fencing",
    "FieldHockeyPenalty", "FloorGymnastics", "FrisbeeCatch", "FrontCrawl", "GolfSwing", "Haircut",
    "Hammering", "HammerThrow", "HandstandPushups", "HandstandWalking", "HeadMassage", "HighJump",
    "HorseRace", "HorseRiding", "HulaHoop", "IceDancing", "JavelinThrow", "JugglingBalls",
    "JumpingJack", "JumpRope", "Kayaking", "Knitting", "LongJump", "Lunges", "MilitaryParade",
    "Mixing", "MoppingFloor", "Nunchucks", "ParallelBars", "PizzaTossing", "PlayingCello",
    "PlayingDaf", "PlayingDhol", "PlayingFlute", "PlayingGuitar", "PlayingPiano", "PlayingSitar",
    "PlayingTabla", "PlayingViolin", "PoleVault", "PommelHorse", "PullUps", "Punch", "PushUps",
    "Rafting", "RockClimbingIndoor", "RopeClimbing", "Rowing", "SalsaSpin", "ShavingBeard",
    "Shotput", "SkateBoarding", "Skiing", "Skijet", "SkyDiving", "SoccerJuggling",
    "SoccerPenalty", "StillRings", "SumoWrestling", "Surfing", "Swing", "TableTennisShot",
    "TaiChi", "TennisSwing", "ThrowDiscus", "TrampolineJumping", "Typing", "UnevenBars",
    "VolleyballSpiking", "WalkingWithDog", "WallPushups", "WritingOnBoard", "YoYo",
)  # fmt: skip
UCF_ON_DISK = {"HandstandPushups": "HandStandPushups"}  # folder and file names
UCF_CLIPS, UCF_GROUPS, UCF_FPS, UCF_SIZE = 3330, 25, 25, (240, 320)
COCO_TRAIN, COCO_VAL = 20000, 1000
COCO_SIZES = ((320, 240), (240, 320), (320, 213), (300, 300))
SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220),
           "yellow": (230, 210, 40), "white": (245, 245, 245)}  # fmt: skip
PLACES = ("left", "middle", "right")
UCF_CHUNK, COCO_CHUNK = 4, 64


# -- UCF101 -------------------------------------------------------------------------------------
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))


def ucf(root: Path, fraction: Fraction, seed: int, workers: int) -> int:
    n = scaled(UCF_CLIPS, fraction, 8)
    rank = np.random.default_rng([seed, 2]).permutation(len(UCF_CLASSES))  # who gets extras
    clips = []  # (class index, group, clip): groups cycle so every fold has train and test
    for c in range(len(UCF_CLASSES)):
        for j in range(n // len(UCF_CLASSES) + int(rank[c] < n % len(UCF_CLASSES))):
            clips.append((c, (c + j) % UCF_GROUPS + 1, j // UCF_GROUPS + 1))
    lists, videos = root / "ucfTrainTestlist", root / "UCF-101"
    lists.mkdir()
    lines = [f"{i} {name}\r\n" for i, name in enumerate(UCF_CLASSES, start=1)]
    (lists / "classInd.txt").write_text("".join(lines), newline="")
    names = [_ucf_name(*clip) for clip in clips]
    for fold in (1, 2, 3):
        test = range(7 * fold - 6, 7 * fold + 1)
        train, tests = [], []
        for (c, g, _), name in zip(clips, names, strict=True):
            if g in test:
                tests.append(f"{UCF_CLASSES[c]}/{name}\r\n")
            else:
                train.append(f"{UCF_CLASSES[c]}/{name} {c + 1}\r\n")
        (lists / f"trainlist{fold:02d}.txt").write_text("".join(train), newline="")
        (lists / f"testlist{fold:02d}.txt").write_text("".join(tests), newline="")
    for c in sorted({c for c, _, _ in clips}):
        (videos / UCF_ON_DISK.get(UCF_CLASSES[c], UCF_CLASSES[c])).mkdir(parents=True)
    jobs = [(str(videos), [(*clip, k * UCF_CHUNK + i) for i, clip in enumerate(chunk)], seed)
            for k, chunk in chunks(clips, UCF_CHUNK)]  # fmt: skip
    return map_jobs(_ucf_chunk, jobs, workers)


def _ucf_name(c: int, group: int, clip: int) -> str:
    disk = UCF_ON_DISK.get(UCF_CLASSES[c], UCF_CLASSES[c])
    return f"v_{disk}_g{group:02d}_c{clip:02d}.avi"


def _ucf_chunk(videos: str, clips: list[tuple[int, int, int, int]], seed: int) -> int:
    for c, group, clip, index in clips:
        rng = np.random.default_rng([seed, 2, index])
        frames = moving_shape(c, int(rng.uniform(4, 10) * UCF_FPS), rng)
        folder = UCF_ON_DISK.get(UCF_CLASSES[c], UCF_CLASSES[c])
        encode_avi(frames, Path(videos, folder, _ucf_name(c, group, clip)))
    return len(clips)


def moving_shape(c: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """``uint8 [T, 240, 320, 3]``: class ``c``'s shape, colour and direction (``c`` mod 3, by
    24, and by 3 mod 8) moving and bouncing over a blocky background of its own."""
    h, w = UCF_SIZE
    blocks = rng.integers(30, 160, (h // 40, w // 40, 3), dtype=np.uint8)
    background = np.kron(blocks, np.ones((40, 40, 1), dtype=np.uint8))
    side = int(rng.integers(30, 70))
    mask = _shape_mask(SHAPES[c % 3], side)
    colour = np.array(list(COLOURS.values())[(c // 24) % len(COLOURS)], dtype=np.uint8)
    dx, dy = DIRECTIONS[(c // 3) % len(DIRECTIONS)]
    speed = rng.uniform(2.0, 5.0)
    x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
    out = np.empty((frames, h, w, 3), dtype=np.uint8)
    out[:] = background
    for t in range(frames):
        x, y = x + dx * speed, y + dy * speed
        if not 0 <= x <= w - side:
            dx, x = -dx, min(max(x, 0), w - side)
        if not 0 <= y <= h - side:
            dy, y = -dy, min(max(y, 0), h - side)
        out[t, int(y) : int(y) + side, int(x) : int(x) + side][mask] = colour
    return out


def _shape_mask(shape: str, side: int) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side] / max(1, side - 1)
    if shape == "circle":
        return (yy - 0.5) ** 2 + (xx - 0.5) ** 2 <= 0.25
    if shape == "triangle":
        return np.abs(xx - 0.5) <= yy / 2
    return np.ones((side, side), dtype=bool)


def encode_avi(frames: np.ndarray, path: Path, fps: int = UCF_FPS) -> None:
    """``uint8 [T, H, W, 3]`` as UCF101 stores clips: XVID (MPEG-4 part 2) in AVI, one thread,
    bit-exact (the same frames give the same bytes)."""
    import imageio_ffmpeg

    _, h, w, _ = frames.shape
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo",
        "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-threads", "1",
        "-c:v", "mpeg4", "-vtag", "XVID", "-q:v", "5", "-pix_fmt", "yuv420p",
        "-fflags", "+bitexact", "-flags", "+bitexact", "-f", "avi", str(path),
    ]  # fmt: skip
    subprocess.run(cmd, input=frames.tobytes(), check=True, capture_output=True)


# -- COCO captions ------------------------------------------------------------------------------
def coco(root: Path, fraction: Fraction, seed: int, workers: int) -> int:
    rng = np.random.default_rng([seed, 3])
    counts = {
        "train2017": scaled(COCO_TRAIN, fraction, 8),
        "val2017": scaled(COCO_VAL, fraction, 4),
    }
    ids = (rng.choice(600_000, size=sum(counts.values()), replace=False) + 1).tolist()
    (root / "annotations").mkdir()
    jobs, start, caption_id = [], 0, 0
    for split, count in counts.items():
        (root / split).mkdir()
        images, annotations, todo = [], [], []
        for index in range(start, start + count):
            w, h = COCO_SIZES[int(rng.integers(len(COCO_SIZES)))]
            scene = _coco_scene(rng)
            name = f"{ids[index]:012d}.jpg"
            images.append({"license": int(rng.integers(1, 9)), "file_name": name, "coco_url": "",
                           "height": h, "width": w, "date_captured": "2013-11-14 16:28:13",
                           "flickr_url": "", "id": ids[index]})  # fmt: skip
            for caption in _coco_captions(scene):
                caption_id += 1
                annotations.append({"image_id": ids[index], "id": caption_id, "caption": caption})
            todo.append((f"{split}/{name}", w, h, scene, index))
        order = rng.permutation(len(annotations))  # the real files do not group them by image
        doc = {
            "info": {"description": "COCO-style captions generated by mmkit", "version": "1.0",
                     "year": 2017, "contributor": "mmkit", "date_created": "2017/09/01"},
            "licenses": [{"url": "", "id": k, "name": f"license {k}"} for k in range(1, 9)],
            "images": images,
            "annotations": [annotations[i] for i in order],
        }  # fmt: skip
        (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(doc))
        jobs += [(str(root), chunk, seed) for _, chunk in chunks(todo, COCO_CHUNK)]
        start += count
    return map_jobs(_coco_chunk, jobs, workers)


def _coco_scene(rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """One to three ``(shape, colour, place)`` objects, at distinct places."""
    places = rng.permutation(len(PLACES))[: int(rng.integers(1, 4))]
    return [(SHAPES[int(rng.integers(3))], list(COLOURS)[int(rng.integers(len(COLOURS)))],
             PLACES[p]) for p in places]  # fmt: skip


def _coco_captions(scene: list[tuple[str, str, str]]) -> list[str]:
    (shape, colour, place), rest = scene[0], scene[1:]
    others = " and ".join(f"a {c} {s}" for s, c, _ in rest) or "nothing else"
    count = ["one shape", "two shapes", "three shapes"][len(scene) - 1]
    return [
        f"A {colour} {shape} on the {place} of the picture.",
        f"a {colour} {shape} next to {others}",
        f"A picture of {count} over a noisy background.",
        f"There is a {shape} in {colour} on the {place} side.",
        f"{count.capitalize()}, the first a {colour} {shape}.",
    ]


def _coco_chunk(root: str, todo: list, seed: int) -> int:
    from PIL import Image, ImageDraw

    for name, w, h, scene, index in todo:
        rng = np.random.default_rng([seed, 3, index])
        coarse = rng.integers(90, 230, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        pixels = np.kron(coarse, np.ones((16, 16, 1), dtype=np.uint8))[:h, :w]
        pixels = pixels + rng.integers(0, 24, pixels.shape, dtype=np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        r = min(w, h) // 7
        for shape, colour, place in scene:
            cx = {"left": w // 5, "middle": w // 2, "right": 4 * w // 5}[place]
            cy = h // 2 + int(rng.integers(-h // 5, h // 5))
            box = (cx - r, cy - r, cx + r, cy + r)
            fill = COLOURS[colour]
            if shape == "circle":
                draw.ellipse(box, fill=fill)
            elif shape == "square":
                draw.rectangle(box, fill=fill)
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
        image.save(Path(root, name), quality=85)
    return len(todo)
