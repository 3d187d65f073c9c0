"""mmkit.engine: the training loop, checkpoints, exact resume, early stopping, the sampler."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import threading
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset

import mmkit
from mmkit.config import TrainConfig
from mmkit.data.epochs import EpochDataset, EpochSampler, distinct_batches
from mmkit.engine import checkpoint as ckpt
from mmkit.engine import plots
from mmkit.engine.optim import param_groups
from mmkit.engine.placement import loader_workers, seed_everything
from mmkit.engine.state import TrainerState
from mmkit.engine.tracker import BestTracker
from mmkit.engine.trainer import Trainer, TrainingInterrupted
from mmkit.errors import CheckpointError, UserInputError
from mmkit.io import checkpoint_dir as ckdir
from mmkit.spec import CheckpointSpec, Stage

CLASSES = 3
DIM = 8
REAL_PLOT_CURVES = plots.plot_curves
CPU = torch.device("cpu")
# what the checkpoints of these runs say they are (only written and read back here)
SPEC = CheckpointSpec(
    modality="audio",
    task="classify",
    backbone=Stage("blob_mlp", {"dim": DIM}),
    preprocess={"input": [Stage("identity")]},
    labels=["a", "b", "c"],
    data={},
    train={},
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: intra-op threads only add contention on a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fast_plots(monkeypatch):
    """Drawing curves.png costs ~0.3 s per epoch; only the reference run below draws it."""
    monkeypatch.setattr(plots, "plot_curves", lambda history, path, monitor: Path(path))


class Blobs(Dataset):
    """Gaussian blobs: class ``c`` is centred on a fixed random point; learnable by a linear map."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(1234)
        centres = torch.randn(CLASSES, DIM, generator=g) * 2.0
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % CLASSES
        self.x = centres[self.y] + torch.randn(n, DIM, generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


class BlobTask:
    """Cross-entropy; accuracy on the validation loader. ``on_step`` is a test hook."""

    monitor = "accuracy"

    def __init__(
        self, on_step=None, fixed_metric: float | None = None, fixed_loss: float | None = None
    ) -> None:
        self.on_step = on_step
        self.fixed_metric = fixed_metric
        self.fixed_loss = fixed_loss
        self.steps = 0

    def loss(self, model, batch, device):
        self.steps += 1
        if self.on_step is not None:
            self.on_step(self.steps)
        x, y = batch
        return F.cross_entropy(model(x.to(device)), y.to(device))

    def evaluate(self, model, loader, device):
        correct = total = 0
        loss = 0.0
        for x, y in loader:
            logits = model(x.to(device))
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
        acc = correct / total
        return {
            "accuracy": self.fixed_metric if self.fixed_metric is not None else acc,
            "loss": self.fixed_loss if self.fixed_loss is not None else loss / total,
        }


def make_model(seed: int = 0, dropout: float = 0.2) -> nn.Module:
    torch.manual_seed(seed)
    # dropout draws from the global RNG, so exact resume needs the RNG state restored
    return nn.Sequential(nn.Linear(DIM, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, CLASSES))


def make_cfg(**kw) -> TrainConfig:
    base = dict(
        dataset="blobs",
        epochs=4,
        batch_size=16,
        lr=0.05,
        device="cpu",
        patience=0,
        seed=0,
        warmup=0.1,
        weight_decay=0.01,
    )
    base.update(kw)
    cfg = TrainConfig(**base)
    cfg.validate()
    return cfg


def make_trainer(run_dir, cfg=None, task=None, model=None, model_seed=0, dropout=0.2) -> Trainer:
    return Trainer(
        model if model is not None else make_model(model_seed, dropout),
        task or BlobTask(),
        Blobs(96, seed=1),
        Blobs(48, seed=2),
        cfg or make_cfg(),
        run_dir,
        spec=SPEC,
        device=CPU,
    )


def assert_same_weights(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    for k, v in expected.items():
        diff = (got[k] - v).abs().max().item()
        assert torch.equal(got[k], v), (
            f"{k} differs from the uninterrupted run (max |diff| {diff:.3g})"
        )


def accuracy(model: nn.Module, ds: Dataset) -> float:
    model.eval()
    with torch.no_grad():
        x, y = ds.x, ds.y
        return float((model(x).argmax(1) == y).float().mean())


# -- the loop --------------------------------------------------------------------------------


def _run_a(run_dir, dropout):
    seed_everything(0)
    trainer = make_trainer(run_dir, dropout=dropout)
    before = accuracy(trainer.model, Blobs(48, seed=2))
    with mock.patch.object(plots, "plot_curves", REAL_PLOT_CURVES):
        result = trainer.fit()
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    return run_dir, result, before, weights, trainer


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """Run A per dropout rate: four uninterrupted epochs (shared, read-only)."""
    cache = {}

    def get(dropout):
        if dropout not in cache:
            cache[dropout] = _run_a(tmp_path_factory.mktemp(f"runA-{dropout}"), dropout)
        return cache[dropout]

    return get


@pytest.fixture
def trained_run(reference_runs):
    return reference_runs(0.2)


def test_training_improves_the_metric(trained_run):
    run, result, before, _, trainer = trained_run
    after = accuracy(trainer.model, Blobs(48, seed=2))
    assert before < 0.7
    assert after >= 0.9
    assert result.best_metric["accuracy"] >= 0.9
    assert result.epochs == 4
    assert trainer.state.global_step == 4 * 6  # 96 samples / batch 16
    hist = result.history
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert result.to_dict() == {
        "run_dir": str(run),
        "best_checkpoint": str(run / "best"),
        "epochs": 4,
        "best_metric": {"accuracy": result.best_metric["accuracy"]},
        "skipped": [],
    }


def test_run_dir_contents(trained_run):
    run, result, _, weights, _ = trained_run
    assert sorted(p.name for p in (run / "best").iterdir()) == [ckdir.CONFIG_FILE, ckdir.MODEL_FILE]
    assert sorted(p.name for p in (run / "last").iterdir()) == sorted(
        [ckdir.CONFIG_FILE, ckdir.MODEL_FILE, ckpt.OPTIMIZER_FILE, ckpt.STATE_FILE]
    )
    # no temp dirs or leftovers from the atomic writes
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert {"train_loss", "train_seconds", "val_accuracy", "val_loss"} <= set(r)
    assert rows == result.history
    png = (run / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    # last/ holds the final weights; config.json has the caller's config + metrics + epoch
    last = load_file(str(run / "last" / ckdir.MODEL_FILE))
    assert set(last) == set(weights)
    for k, v in weights.items():
        assert torch.equal(last[k], v)
    config = json.loads((run / "last" / ckdir.CONFIG_FILE).read_text())
    assert {k: v for k, v in config.items() if k not in ("metrics", "epoch")} == {
        k: v for k, v in SPEC.to_json().items() if k not in ("metrics", "epoch")
    }
    assert config["epoch"] == 4
    assert config["metrics"]["accuracy"] == rows[-1]["val_accuracy"]
    best_cfg = json.loads((run / "best" / ckdir.CONFIG_FILE).read_text())
    best_row = rows[0]  # the first maximum, or a later equal one with a lower validation loss
    for r in rows[1:]:
        acc, best_acc = r["val_accuracy"], best_row["val_accuracy"]
        if acc > best_acc or (acc == best_acc and r["val_loss"] < best_row["val_loss"]):
            best_row = r
    assert best_cfg["epoch"] == best_row["epoch"]
    assert best_cfg["metrics"]["accuracy"] == result.best_metric["accuracy"]
    state = json.loads((run / "last" / ckpt.STATE_FILE).read_text())
    assert state["epoch"] == 4 and state["global_step"] == 24 and state["step_in_epoch"] == 0
    assert state["best_epoch"] == best_row["epoch"]


def test_no_pickle_in_checkpoints(trained_run):
    run = trained_run[0]
    for f in (run / "last").iterdir():
        head = f.read_bytes()[:2]
        assert head != b"\x80\x04" and head != b"\x80\x02", f  # pickle protocol headers
        if f.suffix == ".json":
            json.loads(f.read_text())
        else:
            assert f.suffix == ".safetensors"
            load_file(str(f))


def _interrupted_then_resumed(run_b, stop_step, dropout):
    """Run B: stopped after ``stop_step`` steps as the first SIGINT would, then resumed by a
    fresh Trainer on a fresh model in a changed RNG state (as a new process would be)."""
    holder = {}

    def stop_at(step):
        if step == stop_step:
            holder["trainer"]._stop.requested = True  # what the first SIGINT does

    seed_everything(0)
    trainer = make_trainer(run_b, task=BlobTask(on_step=stop_at), dropout=dropout)
    holder["trainer"] = trainer
    with pytest.raises(TrainingInterrupted, match="--resume"):
        trainer.fit()
    state = json.loads((run_b / "last" / ckpt.STATE_FILE).read_text())
    torch.manual_seed(999)
    task = BlobTask()
    resumed = make_trainer(run_b, task=task, model_seed=5, dropout=dropout)
    resumed.resume()
    return state, task, resumed, resumed.fit()


# dropout=0: nothing draws from the global RNG, so this isolates step/sampler/optimizer/scheduler;
# dropout=0.2: the RNG state must be restored exactly as well.
@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["no_rng_use", "dropout"])
def test_exact_resume_after_interrupt_mid_epoch(reference_runs, tmp_path, dropout):
    """Run B stops mid-epoch 2 (step 9 of 24); the resumed run must end bit-equal to run A."""
    _, result_a, _, weights_a, _ = reference_runs(dropout)
    run_b = tmp_path / "runB"
    state, task, resumed, result_b = _interrupted_then_resumed(run_b, 9, dropout)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 3, 9)
    assert task.steps == 24 - 9  # only the remaining steps were run
    assert result_b.epochs == 4
    assert_same_weights(resumed.model, weights_a)
    assert result_b.best_metric == result_a.best_metric
    rows = [json.loads(line) for line in (run_b / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["val_accuracy"] for r in rows] == [r["val_accuracy"] for r in result_a.history]
    assert [r["val_loss"] for r in rows] == pytest.approx(
        [r["val_loss"] for r in result_a.history], abs=1e-6
    )


@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["no_rng_use", "dropout"])
def test_exact_resume_after_interrupt_at_epoch_end(reference_runs, tmp_path, dropout):
    """Stopping on the last step of an epoch (step 6 of 6, before its evaluation)."""
    weights_a = reference_runs(dropout)[3]
    state, task, resumed, _ = _interrupted_then_resumed(tmp_path / "runB", 6, dropout)
    assert (state["epoch"], state["step_in_epoch"]) == (0, 6)
    assert task.steps == 24 - 6
    assert_same_weights(resumed.model, weights_a)


@pytest.mark.parametrize("stop_step", [9, 6])
def test_resumed_run_logs_the_same_train_loss(reference_runs, tmp_path, stop_step):
    """metrics.jsonl of an interrupted + resumed run reads like the uninterrupted one: the
    interrupted epoch's train_loss averages all of its steps, not only those after the resume."""
    result_a = reference_runs(0.0)[1]
    run_b = tmp_path / "runB"
    _interrupted_then_resumed(run_b, stop_step, 0.0)
    rows = [json.loads(line) for line in (run_b / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == pytest.approx(
        [r["train_loss"] for r in result_a.history], rel=1e-6
    )


def test_sigint_saves_last_and_restores_handlers(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed from the main thread")
    before = signal.getsignal(signal.SIGINT)

    def interrupt(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    trainer = make_trainer(tmp_path / "run", cfg=make_cfg(epochs=2), task=BlobTask(interrupt))
    with pytest.raises(TrainingInterrupted, match="interrupted at epoch 1, step 2"):
        trainer.fit()
    assert signal.getsignal(signal.SIGINT) is before
    state = json.loads((tmp_path / "run" / "last" / ckpt.STATE_FILE).read_text())
    assert (state["global_step"], state["step_in_epoch"]) == (2, 2)
    assert not (tmp_path / "run" / "best").exists()  # no epoch was evaluated


def test_early_stopping(tmp_path):
    cfg = make_cfg(epochs=10, patience=2)
    task = BlobTask(fixed_metric=0.5, fixed_loss=1.0)
    trainer = make_trainer(tmp_path / "run", cfg=cfg, task=task)
    result = trainer.fit()
    # epoch 1 sets the best; epochs 2 and 3 do not improve -> stop after 3
    assert result.epochs == 3
    assert trainer.state.tracker.bad_epochs == 2 and trainer.state.tracker.best_epoch == 1
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3
    assert json.loads((tmp_path / "run" / "best" / ckdir.CONFIG_FILE).read_text())["epoch"] == 1


def test_early_stopping_is_off_on_a_tiny_validation_set(tmp_path):
    """Under 20 validation items the metric moves in big steps: the run trains every epoch."""
    from mmkit.engine.tracker import MIN_VALIDATION_TO_STOP
    from mmkit.events import NullProgress

    notes: list[str] = []

    class Notes(NullProgress):
        def message(self, text: str) -> None:
            notes.append(text)

    small = Blobs(MIN_VALIDATION_TO_STOP - 1, seed=2)
    task = BlobTask(fixed_metric=0.5, fixed_loss=1.0)  # never improves after epoch 1
    cfg = make_cfg(epochs=5, patience=2)
    trainer = Trainer(make_model(0, 0.2), task, Blobs(96, seed=1), small, cfg, tmp_path / "run",
                      spec=SPEC, device=CPU, progress=Notes())  # fmt: skip
    assert trainer.fit().epochs == 5
    assert any("early stopping is off: 19 validation items" in n for n in notes)


def test_a_tie_on_the_metric_goes_to_the_lower_validation_loss(tmp_path):
    """Validation accuracy stuck at one value (as a small validation set at 1.0): the loss, still
    falling, picks the checkpoint and keeps early stopping from ending the run."""
    losses = iter([0.9, 0.5, 0.7, 0.3, 0.4, 0.4])

    class Falling(BlobTask):
        def evaluate(self, model, loader, device):
            return {**super().evaluate(model, loader, device), "loss": next(losses)}

    cfg = make_cfg(epochs=6, patience=2)
    trainer = make_trainer(tmp_path / "run", cfg=cfg, task=Falling(fixed_metric=1.0))
    result = trainer.fit()
    assert result.epochs == 6  # epoch 4 reset the patience; 5 and 6 tie without a lower loss
    assert (trainer.state.tracker.best_epoch, trainer.state.tracker.best_loss) == (4, 0.3)
    assert json.loads((tmp_path / "run" / "best" / ckdir.CONFIG_FILE).read_text())["epoch"] == 4


def test_max_steps_per_epoch(tmp_path):
    task = BlobTask()
    trainer = make_trainer(
        tmp_path / "run", cfg=make_cfg(epochs=2, max_steps_per_epoch=2), task=task
    )
    trainer.fit()
    assert task.steps == 4
    assert trainer.state.global_step == 4


def test_non_finite_loss_is_reported(tmp_path):
    class NanTask(BlobTask):
        def loss(self, model, batch, device):
            return super().loss(model, batch, device) * float("nan")

    trainer = make_trainer(tmp_path / "run", cfg=make_cfg(epochs=1), task=NanTask())
    with pytest.raises(mmkit.errors.MmkitError, match="the loss became nan by step"):
        trainer.fit()


# -- sampler ---------------------------------------------------------------------------------


def test_epoch_sampler_seeded_permutation():
    a = EpochSampler(50, seed=3, shuffle=True)
    b = EpochSampler(50, seed=3, shuffle=True)
    a.set_epoch(2)
    b.set_epoch(2)
    order = list(a)
    assert order == list(b)
    assert sorted(order) == list(range(50))
    assert order != list(range(50))
    b.set_epoch(3)
    assert list(b) != order  # a new order every epoch
    c = EpochSampler(50, seed=4, shuffle=True)
    c.set_epoch(2)
    assert list(c) != order  # and per seed
    plain = EpochSampler(7, seed=3, shuffle=False)
    assert list(plain) == list(range(7)) and len(plain) == 7


@pytest.mark.parametrize(("n", "world"), [(10, 3), (12, 4), (5, 1), (3, 4)])
def test_epoch_sampler_shards_cover_everything_once(n, world):
    """Equal shards of n // world items (so every rank runs the same number of steps, as
    DistributedSampler with drop_last), disjoint, all from one permutation."""
    shards = []
    for rank in range(world):
        s = EpochSampler(n, seed=0, shuffle=True, rank=rank, world=world)
        s.set_epoch(1)
        shard = list(s)
        assert len(shard) == len(s)
        shards.append(shard)
    flat = [i for shard in shards for i in shard]
    assert {len(shard) for shard in shards} == {n // world}
    assert len(set(flat)) == len(flat) == n // world * world
    assert set(flat) <= set(range(n))
    if world == 1:
        assert sorted(flat) == list(range(n))


def test_epoch_sampler_mid_epoch_start():
    s = EpochSampler(20, seed=1, shuffle=True, rank=1, world=2)
    s.set_epoch(4)
    full = list(s)
    s.set_epoch(4, start=6)
    assert list(s) == full[6:]
    assert len(s) == 10 - 6
    s.set_epoch(4, start=10)
    assert list(s) == [] and len(s) == 0


def _scenes(n_items: int, n_texts: int, seed: int) -> tuple[list[list[int]], list[int]]:
    """Items with two options each (an image's captions): option 2i is one of ``n_texts``
    shared texts (many repeats, as renders of one scene), option 2i+1 a text of its own half
    the time, else a shared one too."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.randint(n_texts, (n_items, 2), generator=g).tolist()
    own = torch.rand(n_items, generator=g).lt(0.5).tolist()
    keys: list[int] = []
    for i in range(n_items):
        keys += [shared[i][0], n_texts + i if own[i] else shared[i][1]]
    return [[2 * i, 2 * i + 1] for i in range(n_items)], keys


@pytest.mark.parametrize(("n_items", "n_texts", "batch"), [(300, 40, 32), (945, 120, 64)])
def test_distinct_batches_cover_every_item_once_without_a_repeat_in_a_batch(
    n_items, n_texts, batch
):
    options, keys = _scenes(n_items, n_texts, seed=n_items)
    picks = distinct_batches(options, keys, batch, seed=5)
    # every item exactly once, as one of its own options
    assert sorted(p // 2 for p in picks) == list(range(n_items))
    full = len(picks) // batch
    blocks = [picks[i * batch : (i + 1) * batch] for i in range(full)]
    assert all(len({keys[p] for p in b}) == len(b) for b in blocks), "a text twice in a batch"
    # a plain shuffle with a random option would repeat texts in these batches
    if n_items > 100:
        g = torch.Generator().manual_seed(0)
        shuffled = [2 * int(i) for i in torch.randperm(n_items, generator=g)]
        plain = [shuffled[i * batch : (i + 1) * batch] for i in range(full)]
        assert any(len({keys[p] for p in b}) < len(b) for b in plain)
        assert len({p % 2 for p in picks}) == 2  # both options get picked
    # seeded: the same order for a seed, another for another seed
    assert distinct_batches(options, keys, batch, seed=5) == picks
    assert distinct_batches(options, keys, batch, seed=6) != picks


def test_distinct_batches_put_unavoidable_repeats_last():
    """Too few texts: a batch of 4 cannot avoid repeats at the end; every item still comes
    once, the first batches have no repeat and the repeats all fall in the final ones."""
    options = [[i] for i in range(10)]
    keys = [0] * 6 + [1, 2, 3, 4]  # six items share one text
    picks = distinct_batches(options, keys, 4, seed=0)
    assert sorted(picks) == list(range(10))
    first = picks[:4]
    assert len({keys[p] for p in first}) == 4
    assert [keys[p] for p in picks[4:]].count(0) == 5
    assert distinct_batches(options, keys, 1, seed=0) != list(range(10))  # still shuffled
    assert distinct_batches([], [], 4, seed=0) == []
    with pytest.raises(ValueError, match="batch_size"):
        distinct_batches(options, keys, 0, seed=0)


def test_no_weight_decay_on_norms_biases_temperature_and_embeddings():
    from mmkit.registry import create_backbone

    model = create_backbone("clip_lite_test")
    decay, plain = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in plain["params"]}
    decayed = {names[id(p)] for p in decay["params"]}
    assert len(no_decay) + len(decayed) == len(names)
    assert "logit_scale" in no_decay
    for part in ("token_embedding.weight", "positional_embedding", "class_embedding"):
        assert any(n.endswith(part) for n in no_decay), part
        assert not any(n.endswith(part) for n in decayed), part
    assert all("ln_" not in n and not n.endswith(".bias") for n in decayed)
    assert {"image_projection.weight", "text_projection.weight"} <= decayed
    assert any(n.endswith("attn.in_proj_weight") for n in decayed)
    assert any(n.endswith("mlp.c_fc.weight") for n in decayed)
    model.logit_scale.requires_grad_(False)
    frozen = param_groups(model, 0.1)
    assert all(p is not model.logit_scale for g in frozen for p in g["params"])


# -- checkpoints -----------------------------------------------------------------------------


def test_save_and_load_weights_round_trip(tmp_path):
    model = make_model(1)
    spec = replace(SPEC, data={"hello": "world", "p": Path("x")})
    path = ckpt.save_checkpoint(tmp_path / "ck", model, spec)
    assert ckdir.read_spec(path) == replace(spec, data={"hello": "world", "p": "x"})
    other = make_model(2)
    ckdir.load_weights(other, path, "cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)


def test_tied_weights_round_trip(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5, 4)
            self.out = nn.Linear(4, 5, bias=False)
            self.out.weight = self.emb.weight

    model = Tied()
    ckpt.save_checkpoint(tmp_path / "ck", model, SPEC)
    other = Tied()
    ckdir.load_weights(other, tmp_path / "ck", "cpu")
    assert torch.equal(other.out.weight, model.emb.weight)
    assert other.out.weight is other.emb.weight


def test_load_weights_missing_or_extra_keys_is_checkpoint_error(tmp_path):
    ckpt.save_checkpoint(tmp_path / "ck", nn.Sequential(nn.Linear(4, 2)), SPEC)
    bigger = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match=r"missing \['1.weight', '1.bias'\]"):
        ckdir.load_weights(bigger, tmp_path / "ck", "cpu")
    ckpt.save_checkpoint(tmp_path / "ck2", bigger, SPEC)
    with pytest.raises(CheckpointError, match="unexpected"):
        ckdir.load_weights(nn.Sequential(nn.Linear(4, 2)), tmp_path / "ck2", "cpu")


def test_load_weights_shape_mismatch_is_checkpoint_error(tmp_path):
    """Same keys, other shapes (e.g. a checkpoint trained with other classes)."""
    ckpt.save_checkpoint(tmp_path / "ck", nn.Linear(4, 2), SPEC)
    with pytest.raises(CheckpointError):
        ckdir.load_weights(nn.Linear(4, 3), tmp_path / "ck", "cpu")


def test_load_weights_corrupt_file_is_checkpoint_error(tmp_path):
    ckpt.save_checkpoint(tmp_path / "ck", nn.Linear(4, 2), SPEC)
    (tmp_path / "ck" / ckdir.MODEL_FILE).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="is not a safetensors file"):
        ckdir.load_weights(nn.Linear(4, 2), tmp_path / "ck", "cpu")


def test_resolve_checkpoint_dir(tmp_path):
    run = tmp_path / "run"
    ckpt.save_checkpoint(run / "last", nn.Linear(2, 2), replace(SPEC, data={"which": "last"}))
    assert ckdir.resolve_checkpoint_dir(run) == run / "last"  # no best yet: falls back to last
    ckpt.save_checkpoint(run / "best", nn.Linear(2, 2), replace(SPEC, data={"which": "best"}))
    assert ckdir.resolve_checkpoint_dir(run) == run / "best"
    assert ckdir.resolve_checkpoint_dir(run, prefer="last") == run / "last"
    assert ckdir.resolve_checkpoint_dir(run / "last") == run / "last"  # a checkpoint dir as given
    assert ckdir.read_spec(run).data["which"] == "best"
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        ckdir.resolve_checkpoint_dir(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint or run directory"):
        ckdir.resolve_checkpoint_dir(tmp_path / "empty")
    (run / "best" / ckdir.CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        ckdir.read_spec(run)


def test_load_resume_state_needs_trainer_state(tmp_path):
    ckpt.save_checkpoint(tmp_path / "best", nn.Linear(2, 2), SPEC)
    with pytest.raises(CheckpointError, match="no trainer state"):
        ckpt.load_resume_state(tmp_path / "best")


def test_save_checkpoint_replaces_atomically_and_cleans_up_on_failure(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path / "ck", nn.Linear(2, 2), replace(SPEC, data={"v": 1}))
    ckpt.save_checkpoint(tmp_path / "ck", nn.Linear(2, 2), replace(SPEC, data={"v": 2}))
    assert ckdir.read_spec(tmp_path / "ck").data == {"v": 2}

    def disk_full(self, path):  # fails after model.safetensors is in the temporary dir
        assert (Path(path).parent / ckdir.MODEL_FILE).is_file()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(CheckpointSpec, "write", disk_full)
    with pytest.raises(UserInputError, match=r"cannot write checkpoint .*no space left"):
        ckpt.save_checkpoint(tmp_path / "ck", nn.Linear(2, 2), replace(SPEC, data={"v": 3}))
    monkeypatch.undo()
    assert ckdir.read_spec(tmp_path / "ck").data == {"v": 2}  # old checkpoint intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp dir left


def test_optimizer_and_rng_round_trip_without_pickle(tmp_path, monkeypatch):
    model = make_model(0)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.95))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, DIM)).sum().backward()
        opt.step()
    rng = torch.get_rng_state()
    state = TrainerState(epoch=2, global_step=6, tracker=BestTracker(0.5, None, 1, 1),
                         history=[{"epoch": 1}], scheduler={"last_epoch": 6})  # fmt: skip
    ckpt.save_checkpoint(tmp_path / "last", model, SPEC, optimizer=opt, trainer_state=state)
    torch.manual_seed(12345)  # move the RNG away

    def refuse(*args, **kwargs):
        raise AssertionError("checkpoint loading must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    rs = ckpt.load_resume_state(tmp_path / "last")
    assert torch.equal(torch.get_rng_state(), rng)  # RNG restored
    assert rs.trainer_state == state

    fresh = torch.optim.AdamW(make_model(1).parameters(), lr=0.5)
    fresh.load_state_dict(rs.optimizer_state)
    want, got = opt.state_dict(), fresh.state_dict()
    assert set(got["state"]) == set(want["state"])
    for idx, per in want["state"].items():
        assert set(got["state"][idx]) == set(per)
        for key, value in per.items():
            assert torch.equal(torch.as_tensor(got["state"][idx][key]), torch.as_tensor(value))
    assert got["param_groups"][0]["lr"] == 0.01
    assert tuple(got["param_groups"][0]["betas"]) == (0.8, 0.95)
    assert got["param_groups"][0]["params"] == want["param_groups"][0]["params"]


def test_public_load_checkpoint_missing_path_is_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError):
        mmkit.load_checkpoint(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epoch", "2"),
        ("best", [1]),
        ("history", {"a": 1}),
        ("scheduler", None),
        ("global_step", 1.5),
        ("world", 0),
        ("optimizer", {"param_groups": 1}),
    ],
)
def test_trainer_state_with_a_wrong_type_is_one_line(tmp_path, key, value):
    model = make_model(0)
    opt = torch.optim.AdamW(model.parameters())
    state = TrainerState(epoch=2, global_step=6, tracker=BestTracker(0.5, None, 1, 1))
    ckpt.save_checkpoint(tmp_path / "last", model, SPEC, optimizer=opt, trainer_state=state)
    saved = json.loads((tmp_path / "last" / "trainer_state.json").read_text())
    saved[key] = value
    (tmp_path / "last" / "trainer_state.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match=f"trainer_state.json: {key} must be"):
        ckpt.load_resume_state(tmp_path / "last")


# trainer_state.json as mmkit wrote it before TrainerState (keys and order): it must resume
OLD_STATE_FILE = {
    "epoch": 1, "step_in_epoch": 3, "global_step": 9, "best": 1.0, "best_loss": 0.11,
    "best_epoch": 1, "bad_epochs": 0, "epoch_loss_sum": 0.38,
    "history": [{"epoch": 1, "train_loss": 0.63, "val_accuracy": 1.0, "val_loss": 0.11}],
    "world": 1, "scheduler": {"last_epoch": 9, "_milestones": [2]},
    "optimizer": {"param_groups": [{"lr": 0.04, "params": [0, 1]}], "scalars": {}},
}  # fmt: skip


def test_trainer_state_file_keeps_its_keys_and_order():
    state = TrainerState.from_json(OLD_STATE_FILE, "trainer_state.json")
    assert (state.epoch, state.step_in_epoch, state.global_step) == (1, 3, 9)
    assert state.tracker == BestTracker(best=1.0, best_loss=0.11, best_epoch=1, bad_epochs=0)
    assert state.scheduler == {"last_epoch": 9, "_milestones": [2]} and state.world == 1
    assert json.dumps(state.to_json()) == json.dumps(OLD_STATE_FILE)  # same file, byte for byte
    # the earliest files had neither best_loss nor world
    early = {k: v for k, v in OLD_STATE_FILE.items() if k not in ("best_loss", "world")}
    state = TrainerState.from_json(early, "trainer_state.json")
    assert state.tracker.best_loss is None and state.world == 1


def test_a_non_object_trainer_state_file_is_one_line(tmp_path):
    model = make_model(0)
    opt = torch.optim.AdamW(model.parameters())
    state = TrainerState()
    ckpt.save_checkpoint(tmp_path / "last", model, SPEC, optimizer=opt, trainer_state=state)
    for text, message in (("[1]", "must be a JSON object"), ("{", "cannot read the trainer")):
        (tmp_path / "last" / ckpt.STATE_FILE).write_text(text)
        with pytest.raises(CheckpointError, match=f"trainer_state.json: {message}"):
            ckpt.load_resume_state(tmp_path / "last")


def test_the_trainer_uses_the_process_group_it_is_given(tmp_path, monkeypatch):
    """Joining the process group is fit's job (one init per process); the trainer only uses
    the group and the device it is handed."""
    from mmkit import distributed

    def refuse(device):
        raise AssertionError("the trainer must not join the process group itself")

    monkeypatch.setattr(distributed, "init", refuse)
    trainer = make_trainer(tmp_path / "run", cfg=make_cfg(epochs=1, num_workers=0))
    assert trainer.device == CPU and trainer.ddp_model is trainer.model  # one process: no DDP
    assert trainer.fit().epochs == 1


def test_plots_switch_no_matplotlib_backend(tmp_path):
    """Importing the plots (and the trainer that draws them) neither imports pyplot nor changes
    the backend the importing process chose; the PNGs are drawn all the same."""
    import subprocess
    import sys

    code = (
        "import sys, matplotlib\n"
        "import mmkit.engine.trainer, mmkit.pipelines.classify\n"
        "from mmkit.engine import plots\n"
        "rows = [{'epoch': 1, 'train_loss': 1.0, 'val_accuracy': 0.5}]\n"
        f"plots.plot_curves(rows, {str(tmp_path / 'c.png')!r}, 'accuracy')\n"
        f"plots.plot_confusion([[2, 1], [0, 3]], ['a', 'b'], {str(tmp_path / 'm.png')!r})\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, MPLBACKEND="svg")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["svg", "False"]
    for name in ("c.png", "m.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


@pytest.mark.parametrize("kind", ["tensorboard", "csv", "none"])
def test_loggers_write_one_row_per_epoch_beside_metrics_jsonl(tmp_path, kind):
    from mmkit.engine.loggers import make_logger

    history = [{"epoch": 1, "train_loss": 2.0, "val_accuracy": 0.5}]
    logger = make_logger(kind, tmp_path, history)
    logger.log({"epoch": 2, "train_loss": 1.0, "val_accuracy": 0.75})
    logger.close()
    if kind == "csv":
        import csv

        rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
        assert [(r["epoch"], r["val_accuracy"]) for r in rows] == [("1", "0.5"), ("2", "0.75")]
    elif kind == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(tmp_path / "tensorboard"))
        events.Reload()
        assert [(e.step, e.value) for e in events.Scalars("val/accuracy")] == [(2, 0.75)]
        assert [e.step for e in events.Scalars("train/train_loss")] == [2]
    else:
        assert not (tmp_path / "metrics.csv").exists() and not (tmp_path / "tensorboard").exists()


def test_unknown_logger_is_one_line(tmp_path):
    from mmkit.engine.loggers import make_logger

    with pytest.raises(UserInputError, match="--logger must be one of"):
        make_logger("wandb", tmp_path, [])


class EpochEcho(EpochDataset):
    """Each item is the epoch the dataset was set to when the item was drawn."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        return self.epoch


def test_persistent_workers_see_each_epoch_set_in_the_main_process():
    data = EpochEcho()
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=1, persistent_workers=True)
    seen = []
    for epoch in range(3):
        data.set_epoch(epoch)
        seen.append([b.tolist() for b in loader])
    assert seen == [[[0] * 4], [[1] * 4], [[2] * 4]]


class OrderedBlobs(Blobs):
    ordered = True  # orders its epochs itself: the sampler must not shuffle it


def test_a_dataset_that_orders_its_epochs_is_read_in_sequence(tmp_path):
    trainer = Trainer(
        make_model(),
        BlobTask(),
        OrderedBlobs(40, seed=1),
        Blobs(8, seed=2),
        make_cfg(),
        tmp_path / "run",
        spec=SPEC,
        device=CPU,
    )
    trainer.loaders.epoch(3)
    assert list(trainer.loaders.sampler) == list(range(40))
    shuffled = make_trainer(tmp_path / "shuffled")
    shuffled.loaders.epoch(3)
    assert list(shuffled.loaders.sampler) != list(range(96))


def test_default_loaders_have_persistent_workers(tmp_path):
    assert make_cfg().num_workers is None  # auto
    trainer = make_trainer(tmp_path / "run")
    assert trainer.loaders.train.num_workers == loader_workers(None) >= 1
    assert trainer.loaders.train.persistent_workers and trainer.loaders.val.persistent_workers
    assert loader_workers(0) == 0 and loader_workers(3) == 3
    trainer = make_trainer(tmp_path / "run0", cfg=make_cfg(num_workers=0))
    assert trainer.loaders.train.num_workers == 0 and not trainer.loaders.train.persistent_workers


def test_channels_last_and_compile_options(tmp_path):
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Unflatten(1, (1, 2, 4)), nn.Conv2d(1, 4, 1), nn.Flatten())
    conv.append(nn.Linear(4 * DIM, 3))
    keys = set(conv.state_dict())
    conv.compile_scope = "1"  # compile only the conv (as Classifier names its backbone)
    cfg = make_cfg(channels_last=True, compile=True)
    trainer = make_trainer(tmp_path / "run", cfg=cfg, model=conv)
    assert trainer.model[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert trainer.model[1]._compiled_call_impl is not None
    assert trainer.model[0]._compiled_call_impl is None
    assert set(trainer.model.state_dict()) == keys  # checkpoints keep their names
    plain = make_trainer(tmp_path / "plain", model=make_model())
    assert plain.model[0]._compiled_call_impl is None


def test_threads_option_sets_torch_threads(tmp_path):
    before = torch.get_num_threads()
    try:
        make_trainer(tmp_path / "run", cfg=make_cfg(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_meta_skeleton_skips_initialisation_and_leaves_real_tensors_alone():
    with torch.device("meta"), ckdir.SkipInitOnMeta():
        skeleton = mmkit.create_backbone("audio_cnn_test", num_classes=3)
    real = mmkit.create_backbone("audio_cnn_test", num_classes=3)
    assert all(p.is_meta for p in skeleton.parameters())
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(skeleton) == shapes(real)
    with ckdir.SkipInitOnMeta():  # a real tensor is still filled
        weight = torch.zeros(64, 64)
        nn.init.kaiming_normal_(weight)
        bias = torch.zeros(64).uniform_(1.0, 2.0)
    assert weight.std() > 0 and bias.min() >= 1.0


def test_loading_a_checkpoint_skeleton_imports_no_compiler(tmp_path):
    """Building the meta skeleton of a checkpoint's model and registering the built-in
    backbones must not import torch._dynamo or torchvision.models (1-1.5 s each of a one-file
    ``infer``)."""
    import subprocess
    import sys

    code = (
        "import sys, torch, mmkit\n"
        "from mmkit.io.checkpoint_dir import SkipInitOnMeta\n"
        "with torch.device('meta'), SkipInitOnMeta():\n"
        "    mmkit.create_backbone('audio_cnn', num_classes=3)\n"
        "    mmkit.create_backbone('video_r3d_test', num_classes=3)\n"
        "print('torch._dynamo' in sys.modules, 'torchvision.models' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_training_steps_read_the_loss_on_the_host_only_every_log_every_steps(tmp_path):
    """A host read of a device tensor serialises a GPU: the loop sums the loss on the device and
    reads it (and checks it is finite) every LOG_EVERY steps and at the end of the epoch."""
    from mmkit.engine.trainer import LOG_EVERY

    steps = 2 * LOG_EVERY + 5
    trainer = Trainer(
        make_model(),
        BlobTask(),
        Blobs(16 * steps, seed=1),
        Blobs(48, seed=2),
        make_cfg(epochs=1, num_workers=0),
        tmp_path / "run",
        spec=SPEC,
        device=CPU,
    )
    reads = []
    real_float, real_item = torch.Tensor.__float__, torch.Tensor.item

    def counted(real):
        def read(self, *args):
            # AdamW reads its step counters and the loader its int64 seed, which live on the
            # host whatever the device; any float read is a loss (or a metric) coming back
            steps = (s.get("step") for s in trainer.optimizer.state.values())
            if self.is_floating_point() and not any(self is step for step in steps):
                reads.append(trainer.state.step_in_epoch)
            return real(self, *args)

        return read

    with (
        mock.patch.object(torch.Tensor, "__float__", counted(real_float)),
        mock.patch.object(torch.Tensor, "item", counted(real_item)),
    ):
        trainer._train_epoch()
    assert trainer.state.step_in_epoch == steps
    assert reads == [LOG_EVERY, 2 * LOG_EVERY, steps]
    assert math.isfinite(trainer._epoch_train["train_loss"])
