"""The held-out-source protocol for a plain PyTorch 3D-CNN: the script a practitioner would write.

Frames decoded with imageio-ffmpeg, short side resized to 72 and centre-cropped square; training
takes a random 16-frame clip and a random 64x64 crop with brightness/contrast jitter (no flip:
it would swap pan_left and pan_right); four conv-BN-ReLU stages (24-48-96-192 channels, ~0.66M
parameters) + global average pooling; AdamW (lr 1e-3, weight decay 0.05) with cosine decay, 30
epochs, batch 16; the epoch with the best accuracy on a random tenth of the training clips is
kept. Test: the centre 16-frame clip, centre crop, on every test clip.

    python -m benchmarks.plain_video_baseline [--seeds 0 1 2] [--epochs N] [--json] [--data DIR]
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.camera_motion import print_report, protocol_parser, run_protocol
from benchmarks.camera_motion_data import LABELS, CameraData

FRAMES, SHORT, CROP, EPOCHS, BATCH, LR = 16, 72, 64, 30, 16, 1e-3


def load_clip(path: Path) -> torch.Tensor:
    """uint8 ``[T, SHORT, SHORT, 3]``: every frame, short side to SHORT, centre square."""
    reader = imageio_ffmpeg.read_frames(str(path))
    w, h = next(reader)["size"]
    frames = np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    s = SHORT / min(h, w)
    x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True)
    top, left = (x.shape[2] - SHORT) // 2, (x.shape[3] - SHORT) // 2
    x = x[:, :, top : top + SHORT, left : left + SHORT]
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).contiguous()


def to_input(clips: list[torch.Tensor], train: bool, g: torch.Generator) -> torch.Tensor:
    """A batch ``[B, 3, FRAMES, CROP, CROP]`` in 0..1 minus 0.5, cropped in time and space."""
    out = []
    for clip in clips:
        t = len(clip)
        if train:
            start = int(torch.randint(max(1, t - FRAMES + 1), (1,), generator=g))
            top, left = (int(v) for v in torch.randint(SHORT - CROP + 1, (2,), generator=g))
        else:
            start, top, left = max(0, (t - FRAMES) // 2), (SHORT - CROP) // 2, (SHORT - CROP) // 2
        idx = (start + torch.arange(FRAMES)).clamp(max=t - 1)
        x = clip[idx, top : top + CROP, left : left + CROP].float() / 255
        if train:  # brightness and contrast jitter
            b, c = (torch.rand(2, generator=g) * 0.4 - 0.2).tolist()
            x = ((x - x.mean()) * (1 + c) + x.mean() + b).clamp(0, 1)
        out.append(x.permute(3, 0, 1, 2) - 0.5)
    return torch.stack(out)


def make_model(num_classes: int) -> nn.Module:
    def stage(c_in: int, c_out: int, pool: tuple[int, int, int]) -> list[nn.Module]:
        return [
            nn.Conv3d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm3d(c_out),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(pool),
        ]

    return nn.Sequential(
        nn.Conv3d(3, 24, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2), bias=False),
        nn.BatchNorm3d(24),
        nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 2, 2)),
        *stage(24, 48, (2, 2, 2)),
        *stage(48, 96, (2, 2, 2)),
        nn.Conv3d(96, 192, 3, padding=1, bias=False),
        nn.BatchNorm3d(192),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(192, num_classes),
    )


@torch.no_grad()
def predict(model: nn.Module, clips: list[torch.Tensor], g: torch.Generator) -> torch.Tensor:
    model.eval()
    return torch.cat(
        [model(to_input(clips[i : i + 32], False, g)).argmax(1) for i in range(0, len(clips), 32)]
    )


def plain_recipe(data: CameraData, seed: int, epochs: int | None, run_dir: Path) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    epochs = epochs or EPOCHS
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    train_rows, test_rows = data.rows("train"), data.rows("test")
    clips = [load_clip(data.root / r["path"]) for r in train_rows]
    labels = torch.tensor([LABELS.index(r["label"]) for r in train_rows])
    order = torch.randperm(len(clips), generator=g).tolist()
    n_val = len(clips) // 10
    val, train = order[:n_val], order[n_val:]
    model = make_model(len(LABELS))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
    steps = epochs * (len(train) // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    best, best_state, best_epoch = -1.0, None, 0
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(train), generator=g).tolist()
        for i in range(0, len(perm) - BATCH + 1, BATCH):
            idx = [train[j] for j in perm[i : i + BATCH]]
            x = to_input([clips[j] for j in idx], True, g)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        pred = predict(model, [clips[j] for j in val], g)
        acc = float((pred == labels[val]).float().mean())
        if acc > best:
            best, best_state, best_epoch = acc, copy.deepcopy(model.state_dict()), epoch
    test_clips = [load_clip(data.root / r["path"]) for r in test_rows]
    y = [LABELS.index(r["label"]) for r in test_rows]
    last = predict(model, test_clips, g).tolist()
    model.load_state_dict(best_state)
    pred = predict(model, test_clips, g).tolist()
    return {
        "accuracy": round(float(np.mean(np.equal(pred, y))), 4),
        "macro_f1": round(float(f1_score(y, pred, average="macro")), 4),
        "num_samples": len(pred),
        "val_accuracy": round(best, 4),
        "best_epoch": best_epoch,
        "epochs_run": epochs,
        "last_accuracy": round(float(np.mean(np.equal(last, y))), 4),
        "last_num_samples": len(last),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = protocol_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    settings = {"frames": FRAMES, "crop": CROP, "epochs": EPOCHS, "batch": BATCH, "lr": LR}
    report = run_protocol(plain_recipe, args, name="plain-3dcnn", settings=settings)
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
