"""CPU cost of an audio training step under several ``wave_augment`` settings.

One step is ``wave_augment`` -> ``log_mel`` -> ``spec_augment`` -> ``audio_cnn`` forward and
backward + AdamW on a batch of 32 one-second clips. The settings are run in turn, step after
step, so that other processes on the machine slow each alike; the median of ``--steps`` steps
(after 2 warm-up rounds) is reported, for the augmentation alone and for the whole step.

    python benchmarks/augment_cost.py '{"defaults": {}, "reverb": {"reverb": {"p": 0.5}}}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence


def measure(configs: dict[str, dict], steps: int = 10, batch: int = 32) -> dict[str, dict]:
    import torch

    from mmkit import create_backbone
    from mmkit.registry import create_preprocessor

    torch.manual_seed(0)
    wave = torch.randn(batch, 16000) * 0.1
    target = torch.randint(0, 10, (batch,))
    model = create_backbone("audio_cnn", num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters())
    mel = create_preprocessor("log_mel", top_db=60.0)
    spec = create_preprocessor("spec_augment")
    augs = {k: create_preprocessor("wave_augment", **v).train() for k, v in configs.items()}
    times: dict[str, dict[str, list[float]]] = {k: {"augment": [], "step": []} for k in augs}
    for step in range(steps + 2):
        for name, aug in augs.items():
            t0 = time.perf_counter()
            x = aug(wave)
            t1 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(spec(mel(x))), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step >= 2:
                times[name]["augment"].append(t1 - t0)
                times[name]["step"].append(time.perf_counter() - t0)
    return {
        name: {part: round(statistics.median(v), 4) for part, v in parts.items()}
        for name, parts in times.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", help='JSON: {"name": {wave_augment overrides}, ...}')
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(measure(json.loads(args.configs), args.steps), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
