"""The plain PyTorch recipe of issue 9, on the cross-engine protocol (``cross_engine.py``).

Written directly on torch/torchaudio/soundfile, no mmkit model, data or trainer code: log-mel 64
(n_fft 512, hop 160) in dB with per-utterance normalisation, 4 x conv-BN-ReLU (32-64-128-128,
~240k parameters) + global average pooling, time shift +-100 ms, gain +-6 dB, SpecAugment (one
frequency mask <= 10 bins, one time mask <= 20 frames), AdamW (lr 1e-3) + cosine, batch 32,
30 epochs, the checkpoint of the best validation accuracy (10 % of the training files, random).
``--variant noise_band`` adds faint white noise (SNR 15-30 dB) and 8 kHz band-limiting
(down to 8 kHz and back), each with p=0.5.

    python benchmarks/plain_baseline.py [--variant plain|noise_band] [--seeds 0 1 2] [--json]
"""

from __future__ import annotations

import copy
import random
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
import torchaudio.transforms as T
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from benchmarks.cross_engine import (
    Recipe,
    manifest_rows,
    print_report,
    protocol_parser,
    run_protocol,
)
from benchmarks.cross_engine_data import EngineData
from benchmarks.protocol import breakdown

RATE = 16000
LENGTH = RATE  # 1 s
EPOCHS = 30
BATCH = 32


def load(path: str | Path) -> torch.Tensor:
    """Mono float waveform at 16 kHz, zero-padded or cropped (centred) to 1 s."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wave = torch.from_numpy(data.mean(axis=1))
    if rate != RATE:
        wave = AF.resample(wave, rate, RATE)
    if wave.numel() >= LENGTH:
        start = (wave.numel() - LENGTH) // 2
        return wave[start : start + LENGTH]
    pad = LENGTH - wave.numel()
    return F.pad(wave, (pad // 2, pad - pad // 2))


class Features(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mel = T.MelSpectrogram(RATE, n_fft=512, hop_length=160, n_mels=64)
        self.db = T.AmplitudeToDB(top_db=80)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.db(self.mel(wave).unsqueeze(1))  # [B, 1, F, T]: top_db per example
        return (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + 1e-5)


class Net(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate((32, 64, 128, 128)):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))


def augment(wave: torch.Tensor, noise_band: bool) -> torch.Tensor:
    """Shift +-100 ms (zero fill), gain +-6 dB; with ``noise_band`` also white noise at SNR
    15-30 dB and 8 kHz band-limiting, each with p=0.5."""
    out = torch.empty_like(wave)
    for i, w in enumerate(wave):
        s = random.randint(-1600, 1600)
        w = torch.roll(w, s)
        if s > 0:
            w[:s] = 0
        elif s < 0:
            w[s:] = 0
        w = w * 10 ** (random.uniform(-6, 6) / 20)
        if noise_band and random.random() < 0.5:
            snr = random.uniform(15, 30)
            w = w + torch.randn_like(w) * w.pow(2).mean().sqrt() * 10 ** (-snr / 20)
        if noise_band and random.random() < 0.5:
            w = AF.resample(AF.resample(w, RATE, 8000), 8000, RATE)[:LENGTH]
        out[i] = w
    return out


def spec_augment(x: torch.Tensor) -> torch.Tensor:
    x = T.FrequencyMasking(10, iid_masks=True)(x)
    return T.TimeMasking(20, iid_masks=True)(x)


def predict(model: nn.Module, feats: nn.Module, waves: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat(
            [model(feats(waves[i : i + 128])).argmax(1) for i in range(0, len(waves), 128)]
        )


def baseline_recipe(noise_band: bool) -> Recipe:
    def run(
        train: EngineData, test: EngineData, seed: int, epochs: int | None, run_dir: Path
    ) -> dict[str, Any]:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        labels = sorted(p.name for p in train.train_dir.iterdir() if p.is_dir())
        files = [(f, labels.index(f.parent.name)) for f in sorted(train.train_dir.rglob("*.wav"))]
        random.Random(seed).shuffle(files)
        n_val = len(files) // 10
        waves = torch.stack([load(f) for f, _ in files])
        targets = torch.tensor([y for _, y in files])
        xv, yv, xt, yt = waves[:n_val], targets[:n_val], waves[n_val:], targets[n_val:]

        feats, model = Features(), Net(len(labels))
        epochs = epochs or EPOCHS
        steps = epochs * -(-len(xt) // BATCH)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        best, best_state, best_epoch = -1.0, None, 0
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(len(xt))
            for i in range(0, len(xt), BATCH):
                idx = order[i : i + BATCH]
                x = spec_augment(feats(augment(xt[idx], noise_band)))
                loss = F.cross_entropy(model(x), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            acc = (predict(model, feats, xv) == yv).float().mean().item()
            if acc > best:
                best, best_state, best_epoch = acc, copy.deepcopy(model.state_dict()), epoch
        model.load_state_dict(best_state)

        rows = manifest_rows(test.test_manifest)
        x_test = torch.stack([load(test.test_dir / r["path"]) for r in rows])
        y_test = [labels.index(r["label"]) for r in rows]
        pred = predict(model, feats, x_test).tolist()
        return {
            "accuracy": round(float(accuracy_score(y_test, pred)), 4),
            "macro_f1": round(float(f1_score(y_test, pred, average="macro")), 4),
            "num_samples": len(y_test),
            "val_accuracy": round(best, 4),
            "best_epoch": best_epoch,
            "epochs_run": epochs,
            "params": sum(p.numel() for p in model.parameters()),
            "per_format": breakdown(
                rows, [p == y for p, y in zip(pred, y_test, strict=True)], "format"
            ),
        }

    return run


def main(argv: list[str] | None = None) -> int:
    parser = protocol_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("plain", "noise_band"), default="plain")
    args = parser.parse_args(argv)
    recipe = baseline_recipe(args.variant == "noise_band")
    report = run_protocol(
        recipe, args, name=f"plain_baseline:{args.variant}", settings={"variant": args.variant}
    )
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
