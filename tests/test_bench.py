"""mmkit bench: the report's shape and the invariants that hold whatever the machine's speed.

Timings are the benchmark's business, never a test's: these run tiny settings and check that
every ratio is there, is judged against its target correctly, and that the measuring tools
measure what they claim (a child's own peak memory, items in flight while building a store).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmkit.data.store_builder import decode_all
from mmkit.errors import UserInputError
from mmkit.pipelines.bench import TARGETS, BenchSettings, judge, run_bench
from mmkit.pipelines.bench.epoch import EpochPlan, synthetic_like
from mmkit.pipelines.bench.timing import run_child, slope
from tests.conftest import run_cli

LOADER = ("loader_over_gpu_step", "loader_over_redecode_loader")  # every modality
UNTARGETED = ("loader_over_redecode_loader_batches_only",)  # every modality, no target
RATIOS = {
    "audio": {
        "epoch_over_ceiling",
        "busy_over_alone_epoch_seconds",
        "epoch_over_per_sample_loader",
        "epoch_over_per_sample_loader_mmkit_threads",
        "help_over_import_torch",
        "infer_over_import_torch",
        "prepare_rss_16x_over_1x",
        "prepare_seconds_16x_over_1x",
        "epoch_rss_16x_over_1x",
        "epoch_seconds_16x_over_1x",
        *LOADER,
        *UNTARGETED,
    },
    "video": {
        "epoch_over_ceiling",
        "busy_over_alone_epoch_seconds",
        "store_build_over_ffmpeg",
        *LOADER,
        *UNTARGETED,
    },
    "mm": {
        "epoch_over_ceiling",
        "busy_over_alone_epoch_seconds",
        "step_over_open_clip_loop",
        *LOADER,
        *UNTARGETED,
    },
}


def _check_result(result: dict, modality: str) -> None:
    assert result["modality"] == modality and result["device"] == "cpu"
    assert set(result["ratios"]) == RATIOS[modality]
    assert all(math.isfinite(v) and v > 0 for v in result["ratios"].values())
    assert set(result["met"]) == set(result["targets"]) == RATIOS[modality] & set(TARGETS)
    for name, met in result["met"].items():  # judged as the target says
        op, bound = TARGETS[name]
        value = result["ratios"][name]
        assert met == (value >= bound if op == ">=" else value <= bound)
    rates = result["items_per_second"]
    assert {"epoch", "first_epoch", "ceiling", "epoch_beside_busy_process"} <= set(rates)
    assert all(v > 0 for v in rates.values())
    epoch = result["epoch"]
    assert epoch["items"] % epoch["batch_size"] == 0 and epoch["items"] > 0
    assert epoch["num_workers"] >= 1  # the default: persistent workers
    # one ceiling round before the first epoch and one after each epoch
    assert len(epoch["ceiling_rounds"]) == 1 + 1 + len(epoch["epoch_seconds"]) + 1


# the ratios the issue names, per modality (the report may hold more)
ISSUE_RATIOS = {
    "audio": {
        "epoch_over_ceiling",
        "epoch_over_per_sample_loader",
        "prepare_rss_16x_over_1x",
        "help_over_import_torch",
        "infer_over_import_torch",
        *LOADER,
    },
    "video": {"epoch_over_ceiling", "store_build_over_ffmpeg", *LOADER},
    "mm": {"epoch_over_ceiling", "step_over_open_clip_loop", *LOADER},
}


def test_bench_json_has_every_ratio_target_and_slope(tmp_path):
    """One ``mmkit bench --quick --json`` run: every ratio of every modality, each with its
    target and verdict, the cold start, and the growth of prepare and an epoch at 1x/4x/16x."""
    root = Path(__file__).resolve().parents[1]
    cache = str(tmp_path / "cache")
    proc = run_cli("bench", "--quick", "--device", "cpu", "--json", cwd=root, MMKIT_CACHE=cache)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)  # the whole stdout is one JSON document
    assert set(report["results"]) == {"audio", "video", "mm"}
    for name, result in report["results"].items():
        _check_result(result, name)
        assert ISSUE_RATIOS[name] <= set(result["targets"])
    assert report["all_targets_met"] == all(
        all(r["met"].values()) for r in report["results"].values()
    )
    assert report["machine"]["omp_wait_policy"] == "PASSIVE"
    assert len(report["load_average"]["before"]) == len(report["load_average"]["after"]) == 3
    video = report["results"]["video"]
    assert video["items_per_second"]["store_build"] > 0
    assert video["items_per_second"]["ffmpeg_raw_decode"] > 0
    for result in report["results"].values():  # the loader alone: rates behind the ratios
        rates, ratios = result["items_per_second"], result["ratios"]
        assert ratios["loader_over_redecode_loader"] == pytest.approx(
            rates["loader"] / rates["redecode_loader"], rel=1e-2
        )
        assert ratios["loader_over_gpu_step"] == pytest.approx(
            rates["loader"] / rates["gpu_step_h100"], rel=1e-2
        )
        assert result["loader"]["items_per_epoch"] > 0
    audio = report["results"]["audio"]
    growth = audio["growth"]
    rows = BenchSettings.quick().growth_rows
    assert [p["items"] for p in growth["points"]] == [rows, 4 * rows, 16 * rows]
    for point in growth["points"]:
        for key in ("prepare_seconds", "prepare_peak_rss_mb", "epoch_seconds", "epoch_peak_rss_mb"):
            assert math.isfinite(point[key]) and point[key] > 0
    assert set(growth["slopes_per_1000_items"]) == {
        "prepare_seconds",
        "prepare_peak_rss_mb",
        "epoch_seconds",
        "epoch_peak_rss_mb",
    }
    assert all(math.isfinite(v) for v in growth["slopes_per_1000_items"].values())
    cold = {"import_torch_process", "help_process", "infer_process"}
    assert cold <= set(audio["seconds"])
    assert all(audio["seconds"][k] > 0 for k in cold)
    # the generated data sets are cached for the next run
    assert len(list((tmp_path / "cache" / "bench").iterdir())) == 4


def test_human_output_is_a_table_of_ratios_targets_and_verdicts(capsys):
    from mmkit.cli.bench_output import render_bench

    ratios = {"epoch_over_ceiling": 0.95, "loader_over_redecode_loader": 2.5, "untargeted": 1.0}
    result = {"device": "cpu", "ratios": ratios, "items_per_second": {"epoch": 10.0}}
    result |= judge(ratios, "cpu")
    machine = {"cores": 2, "torch": "x", "torch_threads": 2, "omp_wait_policy": "PASSIVE"}
    report = {
        "results": {"video": result},
        "machine": {**machine, "default_num_workers": 1},
        "load_average": {"before": [1.0, 1.0, 1.0], "after": [2.0, 1.0, 1.0]},
    }
    points = [
        {"factor": f, "items": 4 * f, "prepare_seconds": 1.0, "prepare_peak_rss_mb": 800.0}
        | {"epoch_seconds": 2.0 * f, "epoch_peak_rss_mb": 900.0}
        for f in (1, 4, 16)
    ]
    slopes = dict.fromkeys(("prepare_seconds", "prepare_peak_rss_mb", "epoch_peak_rss_mb"), 0.0)
    result["growth"] = {
        "points": points,
        "slopes_per_1000_items": {**slopes, "epoch_seconds": 500.0},
    }
    render_bench(report)
    lines = capsys.readouterr().out.splitlines()
    row = lambda name: next(x for x in lines if name in x).replace("│", " ").split()  # noqa: E731
    assert ">=" in row("epoch_over_ceiling") and row("epoch_over_ceiling")[-1] == "yes"
    assert row("loader_over_redecode_loader")[-1] == "NO"
    assert row("untargeted")[-1] != "yes" and "NO" not in row("untargeted")
    assert row("16x")[:2] == ["16x", "64"] and row("slope")[-1] == "0"
    assert "500" in row("slope")


def test_unknown_benchmark_is_a_user_error() -> None:
    with pytest.raises(UserInputError, match="available: audio, video, mm"):
        run_bench(["smell"])


def test_judge_applies_each_targets_direction() -> None:
    verdict = judge(
        {"epoch_over_ceiling": 0.85, "prepare_rss_16x_over_1x": 1.2, "untargeted": 7.0}, "cpu"
    )
    assert verdict["met"] == {"epoch_over_ceiling": False, "prepare_rss_16x_over_1x": True}
    assert verdict["targets"]["epoch_over_ceiling"] == ">= 0.9"
    assert judge({"epoch_over_ceiling": 0.85}, "cuda")["met"] == {"epoch_over_ceiling": True}


def test_plan_adds_epochs_for_measurements_between_them() -> None:
    calls = (lambda: None, lambda: None)
    # cold, warm, [1st], warm, [2nd], warm, busy
    assert EpochPlan(epochs=4, busy=True).with_between(*calls).epochs == 5
    assert EpochPlan(epochs=6, busy=True).with_between(*calls).epochs == 6
    assert EpochPlan(epochs=2, busy=False).with_between(*calls).epochs == 4


def test_synthetic_batch_keeps_structure_dtypes_and_range() -> None:
    real = (
        torch.tensor([[-300, 12000]], dtype=torch.int16),
        torch.tensor([3, 5]),
        torch.rand(2, 4),
    )
    fake = synthetic_like(real, torch.Generator().manual_seed(0))
    assert isinstance(fake, tuple) and len(fake) == 3
    for r, f in zip(real, fake, strict=True):
        assert f.shape == r.shape and f.dtype == r.dtype
    assert fake[1].min() >= 3 and fake[1].max() <= 5


def test_child_peak_memory_is_the_childs_own() -> None:
    """Linux keeps a forked child's RSS high-water mark across exec; the launcher makes the
    number the child's own, not this (larger) test process's."""
    ballast = torch.ones(300 * 2**20 // 4)  # this process: +300 MB
    code = "import numpy as np; a = np.ones(100 * 2**20 // 8); print(int(a.sum()))"
    run = run_child([sys.executable, "-c", code])
    assert run.stdout.strip() == str(100 * 2**20 // 8)
    assert 100 < run.peak_rss_mb < 250
    assert run.seconds > 0
    del ballast


def test_failing_child_names_its_error() -> None:
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        run_child([sys.executable, "-c", "1 / 0"])


def test_slope() -> None:
    assert slope([1, 4, 16], [3, 9, 33]) == pytest.approx(2.0)
    assert slope([1, 1], [2, 5]) == 0.0


def test_store_decoding_keeps_few_items_in_flight() -> None:
    """Sources are pulled as the pool needs them, so memory holds a few items, never the
    data set (what keeps prepare's peak memory flat)."""
    pulled = []

    class Lazy:
        def __init__(self, n: int) -> None:
            self.n = n

        @property
        def source(self) -> str:
            pulled.append(self.n)
            return str(self.n)

    records = [Lazy(n) for n in range(200)]
    seen = 0
    for record, array in decode_all(lambda s, p: [int(s)], records, {}, workers=2):
        assert array == [record.n]
        seen += 1
        assert len(pulled) <= seen + 2 * 2
    assert seen == 200


def test_open_clip_twin_has_the_towers_of_clip_lite() -> None:
    import mmkit
    from mmkit.pipelines.bench.peers import open_clip_twin

    clip = mmkit.create_backbone("clip_lite_test")
    twin = open_clip_twin(clip)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(twin) == count(clip)
    images = torch.randn(2, 3, clip.image_size, clip.image_size)
    tokens = torch.randint(1, 100, (2, clip.context_length))
    image_f, text_f, _ = twin(images, tokens)
    assert image_f.shape == text_f.shape == (2, clip.embed_dim)


def test_bench_cli_help_names_its_options() -> None:
    proc = run_cli("bench", "--help", cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "--modality" in out and "--quick" in out and "--device" in out


def test_runtime_sets_a_passive_omp_wait_policy_unless_the_user_chose() -> None:
    code = "import os, mmkit; print(os.environ['OMP_WAIT_POLICY'])"
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    run = lambda e: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], capture_output=True, text=True, env=e, cwd=root, check=True
    ).stdout.strip()
    assert run(env) == "PASSIVE"
    assert run({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_python_m_mmkit_help_and_version_import_no_torch(flag):
    """The cold start the bench times: ``python -m mmkit --help`` as a whole process (through
    ``mmkit/__main__.py``), never importing torch."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['mmkit', '{flag}']\n"
        "try:\n"
        "    runpy.run_module('mmkit', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchaudio')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
