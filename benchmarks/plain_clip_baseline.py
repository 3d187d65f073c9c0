"""The plain open_clip loop of issue 18, on the image-text protocol (``image_text.py``).

Written directly on open_clip and torchvision, no mmkit model, data or trainer code (only mmkit's
recall@K scores the result): ``open_clip.CLIP`` at the towers' sizes of mmkit's ``clip_lite``
(ViT 64 px / patch 8, width 192, 4 layers, 3 heads; text transformer width 128, 4 layers, 4
heads, context 32; embeddings 128), open_clip's own image transforms (train: RandomResizedCrop
scale 0.7-1.0; eval: resize + centre crop) and tokenizer, ``open_clip.loss.ClipLoss``. Each epoch
every training image is seen once, in batches of 128 in which no caption occurs twice (each
image takes one of its captions not yet in the batch, at random); AdamW (lr 1e-3, weight decay
0.1 on weight matrices only: none on norms, biases, the logit scale and embeddings), one epoch
of linear warm-up then a cosine to 0, the logit scale clamped at 100 after each step; 30 epochs
on all of ``train.csv``, the last weights scored.

    python benchmarks/plain_clip_baseline.py [--seeds 0 1 2] [--epochs N] [--lr X] [--json]
"""

from __future__ import annotations

import csv
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import open_clip
import torch
from open_clip.loss import ClipLoss
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from open_clip.transform import AugmentationCfg, image_transform
from PIL import Image

from benchmarks.image_text import print_report, protocol_parser, run_protocol, score_sets
from mmkit.metrics.retrieval import retrieval_metrics, zero_shot_accuracy

EPOCHS, BATCH, LR, WEIGHT_DECAY, CROP_SCALE = 30, 128, 1e-3, 0.1, (0.7, 1.0)
IMAGE_SIZE, CONTEXT = 64, 32
SHAPES = ("circle", "square", "triangle", "cross")  # the label column; prompt as mmkit's default


def read_manifest(path: Path) -> tuple[list[Image.Image], list[list[str]], list[str]]:
    """Images (decoded once, RGB), their captions and labels, in manifest order."""
    captions: dict[str, list[str]] = {}
    labels: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            captions.setdefault(row["image"], []).append(row["caption"])
            labels[row["image"]] = row["label"]
    images = [Image.open(path.parent / name).convert("RGB") for name in captions]
    return images, list(captions.values()), list(labels.values())


def batches(captions: Sequence[list[str]], rng: random.Random) -> list[list[tuple[int, str]]]:
    """One epoch: every image once, shuffled, packed into batches of ``BATCH`` in which no
    caption text occurs twice: each image takes one of its captions not yet in the batch, drawn
    at random (an image whose captions are all taken waits for the next batch)."""
    order = list(range(len(captions)))
    rng.shuffle(order)
    out: list[list[tuple[int, str]]] = []
    while order:
        batch, seen, rest = [], set(), []
        for i in order:
            free = [c for c in captions[i] if c not in seen]
            if len(batch) < BATCH and free:
                batch.append((i, rng.choice(free)))
                seen.add(batch[-1][1])
            else:
                rest.append(i)
        out.append(batch)
        order = rest
    return out


def build_model() -> open_clip.CLIP:
    vision = CLIPVisionCfg(layers=4, width=192, head_width=64, patch_size=8, image_size=IMAGE_SIZE)
    text = CLIPTextCfg(context_length=CONTEXT, width=128, heads=4, layers=4)
    return open_clip.CLIP(embed_dim=128, vision_cfg=vision, text_cfg=text)


def param_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Weight decay on weight matrices only (not norms, biases, logit scale, embeddings)."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        plain = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (rest if plain else decay).append(p)
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0}]


@torch.no_grad()
def score(model: open_clip.CLIP, manifest: Path) -> dict[str, Any]:
    """mmkit's recall@K (and zero-shot shape accuracy) over every image of ``manifest``."""
    model.eval()
    images, captions, labels = read_manifest(manifest)
    preprocess = image_transform(IMAGE_SIZE, is_train=False)
    image_f = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
    texts = [c for cs in captions for c in cs]
    owner = torch.tensor([i for i, cs in enumerate(captions) for _ in cs])
    text_f = model.encode_text(open_clip.tokenize(texts, CONTEXT), normalize=True)
    report = retrieval_metrics(image_f, text_f, owner)
    prompts = model.encode_text(open_clip.tokenize([f"a photo of a {s}" for s in SHAPES], CONTEXT))
    targets = torch.tensor([SHAPES.index(label) for label in labels])
    report["zero_shot_accuracy"] = zero_shot_accuracy(image_f, prompts, targets)
    report["num_images"] = len(images)
    return report


def run_seed(data: dict[str, Any], seed: int, epochs: int, lr: float = LR) -> dict[str, Any]:
    random.seed(seed)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    images, captions, _ = read_manifest(data["root"] / "train.csv")
    augment = image_transform(IMAGE_SIZE, is_train=True, aug_cfg=AugmentationCfg(scale=CROP_SCALE))
    model = build_model()
    optimizer = torch.optim.AdamW(param_groups(model), lr=lr)
    per_epoch = len(batches(captions, random.Random(seed)))  # the packing gives the count
    total, warmup = epochs * per_epoch, per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            (s + 1) / warmup
            if s < warmup
            else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup)))
        ),
    )
    loss_fn = ClipLoss()
    steps = 0
    for _ in range(epochs):
        model.train()
        for batch in batches(captions, rng):
            pixels = torch.stack([augment(images[i]) for i, _ in batch])
            tokens = open_clip.tokenize([c for _, c in batch], CONTEXT)
            loss = loss_fn(*model(pixels, tokens)[:3])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            steps += 1
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
    row: dict[str, Any] = {"epochs_run": epochs, "steps": steps, "train_images": len(images)}
    return row | score_sets(data, lambda manifest: score(model, manifest))


def main(argv: Sequence[str] | None = None) -> int:
    parser = protocol_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--lr", type=float, default=LR, help="the recipe's: 1e-3")
    args = parser.parse_args(argv)
    epochs = args.epochs or EPOCHS
    settings = {"recipe": "plain open_clip loop", "epochs": epochs, "batch_size": BATCH}
    settings["lr"] = args.lr
    report = run_protocol(
        lambda data, seed, _out: run_seed(data, seed, epochs, args.lr), args, settings
    )
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
