"""The paths users would otherwise take, feeding the same models.

- audio: the per-sample loader people usually write: ``soundfile`` decode, resample, crop and a
  torchaudio log-mel in ``Dataset.__getitem__``, a DataLoader with 2 workers, the backbone on
  the batched features;
- video: the bundled ffmpeg decoding the same files to raw frames at the store's size, one file
  after another (decoding every clip again in the loader is measured in
  :mod:`~mmkit.pipelines.bench.loader`);
- image-text: a plain loop written directly on open_clip (``CLIP`` built from the same tower
  settings, ``open_clip.loss.ClipLoss``) stepping on preprocessed images and tokens.

Each peer is written the way its users write it, without mmkit's machinery.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

PEER_WORKERS = 2


class PerSampleAudio(Dataset):
    """Decode, resample to ``sample_rate``, random-crop ``num_samples`` and log-mel one file."""

    def __init__(
        self, files: Sequence[str], labels: Sequence[int], mel: dict[str, Any], num_samples: int
    ) -> None:
        import torchaudio

        self.files, self.labels, self.num_samples = list(files), list(labels), num_samples
        self.sample_rate = mel["sample_rate"]
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=mel["sample_rate"],
            n_fft=mel["n_fft"],
            win_length=mel["win_length"],
            hop_length=mel["hop_length"],
            f_min=mel["f_min"],
            f_max=mel["f_max"],
            n_mels=mel["n_mels"],
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB(top_db=mel.get("top_db"))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import soundfile
        import torchaudio

        data, rate = soundfile.read(self.files[i], dtype="float32", always_2d=True)
        wave = torch.from_numpy(data).mean(dim=1)
        if rate != self.sample_rate:
            wave = torchaudio.functional.resample(wave, rate, self.sample_rate)
        if len(wave) < self.num_samples:
            wave = F.pad(wave, (0, self.num_samples - len(wave)))
        start = int(torch.randint(len(wave) - self.num_samples + 1, ()))
        spec = self.to_db(self.mel(wave[start : start + self.num_samples]))
        spec = (spec - spec.mean()) / (spec.std() + 1e-5)
        return spec[None], self.labels[i]


def classifier_epochs(
    model: torch.nn.Module, dataset: Dataset, *, batch_size: int, epochs: int, lr: float
) -> list[float]:
    """Seconds of each of ``epochs`` plain training epochs (a fresh loader each, as written
    without persistent workers): cross-entropy, AdamW, ``PEER_WORKERS`` workers, on the CPU."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        loader = DataLoader(
            dataset, batch_size=batch_size, shuffle=True, num_workers=PEER_WORKERS, drop_last=True
        )
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def audio_peer(job: dict[str, Any]) -> dict[str, Any]:
    """The per-sample audio loader feeding ``job["backbone"]`` (run in a child process)."""
    import mmkit

    torch.manual_seed(0)
    dataset = PerSampleAudio(job["files"], job["labels"], job["mel"], job["num_samples"])
    model = mmkit.create_backbone(job["backbone"], num_classes=job["num_classes"])
    seconds = classifier_epochs(
        model, dataset, batch_size=job["batch_size"], epochs=job["epochs"], lr=job["lr"]
    )
    return {
        "epoch_seconds": seconds,
        "items": len(dataset) // job["batch_size"] * job["batch_size"],
    }


def ffmpeg_raw_seconds(files: Sequence[Path], short_side: int) -> float:
    """Seconds for the bundled ffmpeg to decode each file to raw RGB frames scaled to
    ``short_side`` (the store's size), one file after another, output discarded."""
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    scale = f"scale=w='if(lt(iw,ih),{short_side},-1)':h='if(lt(iw,ih),-1,{short_side})'"
    start = time.perf_counter()
    for f in files:
        cmd = [exe, "-v", "error", "-nostdin", "-i", str(f), "-vf", scale, "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-"]  # fmt: skip
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def open_clip_twin(model: torch.nn.Module) -> torch.nn.Module:
    """An ``open_clip.CLIP`` with the towers of a ViT + text-transformer ClipLite: the same
    sizes, read off its open_clip bodies."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    vision, text = model.image_tower.body, model.text_tower.body
    if not hasattr(vision, "conv1") or not hasattr(text, "token_embedding"):
        raise ValueError("the open_clip twin needs a ViT image tower and a text transformer")
    blocks, text_blocks = vision.transformer.resblocks, text.transformer.resblocks
    width = vision.conv1.out_channels
    vision_cfg = CLIPVisionCfg(
        layers=len(blocks),
        width=width,
        head_width=width // blocks[0].attn.num_heads,
        mlp_ratio=blocks[0].mlp.c_fc.out_features / width,
        patch_size=vision.conv1.kernel_size[0],
        image_size=model.image_size,
    )
    text_cfg = CLIPTextCfg(
        context_length=text.context_length,
        vocab_size=text.vocab_size,
        width=text.width,
        heads=text_blocks[0].attn.num_heads,
        layers=len(text_blocks),
        mlp_ratio=text_blocks[0].mlp.c_fc.out_features / text.width,
    )
    return open_clip.CLIP(embed_dim=model.embed_dim, vision_cfg=vision_cfg, text_cfg=text_cfg)


def open_clip_loop_step(
    twin: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor, lr: float
):
    """One step of the plain open_clip loop per call: ``CLIP(images, tokens)``, ``ClipLoss``,
    AdamW (returns the batch size)."""
    from open_clip.loss import ClipLoss

    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(twin.parameters(), lr=lr)
    twin.train()

    def step() -> int:
        image_f, text_f, scale = twin(images, tokens)
        loss = loss_fn(image_f, text_f, scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            twin.logit_scale.clamp_(0, 4.6052)  # as open_clip's training loop does
        return len(images)

    return step
