"""mmkit bench: every stage is measured in one run and reported against the train step."""

from __future__ import annotations

import pytest

from mmkit.errors import UserInputError
from mmkit.pipelines.bench import run_bench


def test_audio_bench_reports_rates_and_ratios() -> None:
    [report] = run_bench(["audio"], device="cpu", seconds=0.05)
    rates, ratios = report["items_per_second"], report["ratio_to_train_step"]
    assert (
        set(rates)
        == set(ratios)
        == {"decode_per_sample", "prepared_store_read", "log_mel_on_device", "audio_cnn_train_step"}
    )
    assert all(rate > 0 for rate in rates.values())
    assert ratios["audio_cnn_train_step"] == 1.0
    assert ratios["prepared_store_read"] > ratios["decode_per_sample"]  # why the store exists


def test_unknown_benchmark_is_a_user_error() -> None:
    with pytest.raises(UserInputError, match="available: audio"):
        run_bench(["smell"])
