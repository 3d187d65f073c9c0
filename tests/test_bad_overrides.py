"""``--set`` / ``--config`` / option values that are wrong, absurd or not a config (issue 19).

Rows in :mod:`tests.test_bad_inputs` style, run through the forked CLI: exit 1 with one
``error:`` line naming the key (or file) and the bad value, or exit 2 (a usage error) for what
the option parser itself refuses; never a traceback, a hang or a run that never ends, and
nothing written. What ``tests/test_config.py`` and ``tests/test_cli_options.py`` already pin
(unknown and misspelt keys, ``key`` without ``=``, wrong types, YAML bombs, NaN in a file) is not
repeated. The dataset does not exist: a value that got through validation fails on it instead,
and the row fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.forked_cli import ForkedCli
from tests.test_bad_inputs import ERROR_LINE, TIMEOUT

DEEP = ".".join(["k"] * 40)


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # after ``audio train --dataset {missing} --out {out}``
    code: int
    stderr: str  # a pattern; exit 1 means exactly one ``error:`` line


def sets(*items: str) -> tuple[str, ...]:
    return tuple(a for item in items for a in ("--set", item))


CASES = [
    # -- out of range: refused, not an overflow deep in torch or a run without end ------------
    Case("epochs-huge", sets("epochs=99999999999999999999999"), 1,
         r"--epochs must be at most 1,000,000, got 99,999,999,999,999,999,999,999"),
    Case("epochs-huge-flag", ("--epochs", "1000000000"), 1, r"--epochs must be at most 1,000,000"),
    Case("epochs-negative", sets("epochs=-3"), 1, r"--epochs must be >= 1, got -3"),
    Case("batch-size-huge", sets("batch_size=100000000000000000000"), 1,
         r"--batch-size must be at most 1,000,000"),
    Case("batch-size-huge-flag", ("--batch-size", "2000000"), 1,
         r"--batch-size must be at most 1,000,000, got 2,000,000"),
    Case("batch-size-negative", sets("batch_size=-8"), 1, r"--batch-size must be >= 1, got -8"),
    Case("seed-huge", sets("seed=99999999999999999999999"), 1, r"--seed must be at most"),
    Case("workers-huge", sets("num_workers=1000000000"), 1, r"--num-workers must be at most 256"),
    Case("threads-huge", sets("threads=1000000000"), 1, r"--threads must be at most 1,024"),
    Case("patience-negative", sets("patience=-3"), 1, r"--patience must be >= 0, got -3"),
    Case("max-steps-negative", sets("max_steps_per_epoch=-1"), 1,
         r"--max-steps-per-epoch must be >= 0, got -1"),
    Case("grad-clip-negative", sets("grad_clip=-1"), 1, r"grad_clip must be >= 0, got -1"),
    Case("weight-decay-negative", sets("weight_decay=-0.1"), 1, r"weight_decay must be >= 0"),
    Case("epochs-float", sets("epochs=1e400"), 1, r"--set: epochs must be int, got '1e400'"),
    # -- non-finite numbers, as YAML writes them and as words -------------------------------
    Case("lr-inf-yaml", sets("lr=.inf"), 1, r"--set: lr must be a finite number, got inf"),
    Case("lr-nan-yaml", sets("lr=.nan"), 1, r"--set: lr must be a finite number, got nan"),
    Case("lr-minus-inf", sets("lr=-.inf"), 1, r"lr must be a finite number, got -inf"),
    Case("lr-inf-word", sets("lr=inf"), 1, r"--set: lr must be a finite number, got inf"),
    Case("lr-inf-flag", ("--lr", "inf"), 1, r"lr must be a finite number, got inf"),
    Case("warmup-nan", sets("warmup=.nan"), 1, r"warmup must be a finite number, got nan"),
    Case("kwargs-inf", sets("backbone_kwargs.dropout=.inf"), 1,
         r"backbone_kwargs\.dropout must be a finite number, got inf"),
    # -- nesting ----------------------------------------------------------------------------
    Case("deep-unknown", sets("a.b.c.d=1"), 1, r"--set: unknown key 'a'$"),
    Case("deep-into-a-number", sets("lr.b.c.d=1"), 1, r"--set: lr is not a mapping"),
    Case("deep-too-deep", sets(f"backbone_kwargs.{DEEP}=1"), 1,
         r"--set: backbone_kwargs expands to more than 100,000 values or 32 levels"),
    # -- --config that is not an experiment file ---------------------------------------------
    Case("config-folder", ("--config", "{folder_yaml}"), 1,
         r"config file .*folder\.yaml: is a directory"),
    Case("config-toml", ("--config", "{toml}"), 1, r"c\.toml: not valid YAML/JSON"),
    Case("config-binary", ("--config", "{binary}"), 1, r"binary\.yaml: not a UTF-8 text file"),
    Case("config-json-list", ("--config", "{json_list}"), 1,
         r"list\.json: expected a mapping of option names to values"),
    Case("config-json-with-yaml", ("--config", "{yaml_as_json}"), 1,
         r"yaml\.json: not valid YAML/JSON \(Expecting value"),
    Case("config-missing", ("--config", "{nowhere}"), 1, r"config file not found: .*nowhere"),
    Case("config-empty-is-defaults", ("--config", "{empty}", "--set", "epochs=0"), 1,
         r"--epochs must be >= 1, got 0"),
    # -- what the option parser refuses is a usage error (exit 2) ------------------------------
    Case("epochs-not-a-number-flag", ("--epochs", "ten"), 2, r"Invalid value for '--epochs'"),
    Case("set-without-value", ("--set",), 2, r"Option '--set' requires an argument"),
]  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_overrides")
    out = {
        "folder_yaml": root / "folder.yaml",
        "toml": root / "c.toml",
        "binary": root / "binary.yaml",
        "json_list": root / "list.json",
        "yaml_as_json": root / "yaml.json",
        "empty": root / "empty.yaml",
        "nowhere": root / "nowhere.yaml",
        "missing": root / "no_dataset",
    }
    out["folder_yaml"].mkdir()
    out["toml"].write_text('[train]\nepochs = 3\nbackbone = "audio_cnn_test"\n')
    out["binary"].write_bytes(bytes(range(128, 256)) * 8)
    out["json_list"].write_text("[1, 2]\n")
    out["yaml_as_json"].write_text("epochs: 2\n")
    out["empty"].write_text("")
    return {k: str(v) for k, v in out.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_override(case: Case, files: dict[str, str], cli: ForkedCli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["audio", "train", "--dataset", files["missing"], "--out", str(out)]
    args += [a.format(**files) for a in case.args]
    proc = cli.run(args, timeout=TIMEOUT)
    assert proc.returncode != 124, f"hung for {TIMEOUT:g} s"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == case.code, proc.stderr
    if case.code == 1:
        assert len(proc.stderr.splitlines()) == 1 and ERROR_LINE.match(proc.stderr), proc.stderr
    assert re.search(case.stderr, proc.stderr, re.M), proc.stderr
    assert not out.exists()  # refused before anything was written
