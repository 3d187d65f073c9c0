"""The CLI's surface: every option reaches its config field through the one declared binding,
the README's commands and each command's help example parse as written, --help shows the
per-modality defaults and the choices, completion is on, and help/version never load torch."""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from mmkit.cli.binding import MECHANISM, binding_of, config_from, walk
from mmkit.cli.main import build_command, main
from mmkit.configs import AudioConfig, MMConfig, VideoConfig
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
TREE = build_command()
LEAVES = {path: cmd for path, cmd in walk(TREE) if not hasattr(cmd, "commands")}


def leaf_ids() -> list[str]:
    return [" ".join(path) for path in LEAVES]


def parse(path: tuple[str, ...], args: list[str]):
    """The click context of ``mmkit PATH ARGS``: parsed and type-checked, nothing run."""
    return LEAVES[path].make_context(" ".join(("mmkit", *path)), list(args))


# -- the option -> config mapping ------------------------------------------------------------
@pytest.mark.parametrize("path", list(LEAVES), ids=leaf_ids())
def test_every_option_maps_to_a_config_field_or_is_declared_cli_only(path):
    cmd = LEAVES[path]
    binding = binding_of(cmd)
    assert binding is not None, f"mmkit {' '.join(path)} is not registered with binding.command"
    fields = binding.fields()
    names = {p.name for p in cmd.params} - {"help"}
    for name in names:
        target = binding.field_for(name)
        assert target is None or target in fields, (
            f"mmkit {' '.join(path)}: parameter {name!r} is neither a field of "
            f"{getattr(binding.config, '__name__', None)} nor declared CLI-only"
        )
    # no stale declarations: what the binding names exists on the command
    assert binding.cli_only <= names, binding.cli_only - names
    assert set(binding.rename) <= names
    if binding.config is not None:
        assert {"config", "set_"} <= names, "a command with a config takes --config and --set"
    else:
        assert not names & MECHANISM


def choices_of(param) -> tuple[str, ...]:
    """A closed option's choices (a ``Literal`` annotation, or a click ``Choice``)."""
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(typing.get_args(annotation))
    return tuple(getattr(getattr(param, "type", None), "choices", None) or ())


def _value_for(param, hint) -> tuple[list[str], object]:
    """A command-line snippet for ``param`` and the config value it must produce."""
    opt = param.opts[0]
    if getattr(param, "secondary_opts", None):  # --augment/--no-augment style
        default = param.default
        return ([param.secondary_opts[0]], False) if default else ([opt], True)
    choices = choices_of(param)
    if choices:
        return [opt, str(choices[-1])], str(choices[-1])
    if param.name == "device":
        return [opt, "cuda:1"], "cuda:1"
    base = typing.get_args(hint)[0] if typing.get_args(hint) else hint
    if base is int:
        return [opt, "70"], 70
    if base is float:
        return [opt, "0.25"], 0.25
    return [opt, "some-value"], "some-value"


CASES = [
    (path, param.name)
    for path, cmd in LEAVES.items()
    if (b := binding_of(cmd)) is not None and b.config is not None
    for param in cmd.params
    if b.field_for(param.name or "") is not None and param.param_type_name == "option"
]


@pytest.mark.parametrize(("path", "name"), CASES, ids=[f"{' '.join(p)}:{n}" for p, n in CASES])
def test_each_flag_reaches_its_config_field(path, name, monkeypatch):
    cmd = LEAVES[path]
    binding = binding_of(cmd)
    monkeypatch.setattr(binding.config, "validate", lambda self: None)  # any value, just routed
    field = binding.field_for(name)
    hint = typing.get_type_hints(binding.config)[field]
    param = next(p for p in cmd.params if p.name == name)
    snippet, expected = _value_for(param, hint)
    required = ["-k", "run"] if path[-1] == "eval" and path[0] != "mm" else []
    cfg = config_from(parse(path, [*required, *snippet]))
    assert getattr(cfg, field) == expected
    # and nothing else moved off its default
    defaults = binding.config(**({"dataset": cfg.dataset} if field != "dataset" else {}))
    for f in dataclasses.fields(cfg):
        if f.name not in (field, "dataset"):
            assert getattr(cfg, f.name) == getattr(defaults, f.name), f.name


def test_precedence_defaults_file_set_flags(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "dataset: from_file\nepochs: 5\nbatch_size: 8\nlr: 0.01\n"
        "backbone_kwargs: {width: 16, depth: 3}\n"
    )
    args = ["--config", str(exp), "--set", "epochs=6", "--set", "batch_size=9"]
    args += ["--set", "backbone_kwargs.width=64", "--epochs", "7", "--hop-length", "320"]
    cfg = config_from(parse(("audio", "train"), args))
    assert cfg.dataset == "from_file"  # file over default
    assert cfg.lr == 0.01  # file, untouched by --set or a flag
    assert cfg.batch_size == 9  # --set over file
    assert cfg.epochs == 7  # flag over --set over file
    assert cfg.backbone_kwargs == {"width": 64, "depth": 3}  # dotted --set keeps the rest
    assert cfg.hop_length == 320
    assert cfg.weight_decay == AudioConfig.weight_decay  # nobody gave it: the default


def test_defaults_shown_in_help_never_override_the_config_file(tmp_path):
    """--help shows 30 epochs for audio, but an untyped --epochs must not beat the file."""
    exp = tmp_path / "exp.yaml"
    exp.write_text("dataset: d\nepochs: 3\nsample_rate: 8000\n")
    cfg = config_from(parse(("audio", "train"), ["--config", str(exp)]))
    assert (cfg.epochs, cfg.sample_rate) == (3, 8000)


def test_eval_takes_config_and_set(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("dataset: held_out.csv\nlabel_column: word\n")
    args = ["-k", "run", "--config", str(exp), "--set", "hf_split=test", "--audio-column", "wav"]
    cfg = config_from(parse(("audio", "eval"), args))
    assert (cfg.dataset, cfg.label_column, cfg.hf_split) == ("held_out.csv", "word", "test")
    assert cfg.audio_column == "wav"  # the renamed --audio-column reaches its field


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--set", "epoch=3"], ["--set: unknown key 'epoch'", "did you mean 'epochs'?"]),
        (["--set", "epochs"], ["--set expects key=value, got 'epochs'"]),
        (["--set", "epochs.x=1"], ["--set: epochs is not a mapping"]),
        (["--set", "noise_snr=[1, 2, 3]"], ["--set: noise_snr must be 2 finite numbers"]),
        (["--set", "lr=fast"], ["--set: lr must be float, got 'fast'"]),
        (["--win-length", "1024"], ["--win-length must be in [1, --n-fft (512)], got 1024"]),
        (["--f-max", "9000"], ["f_min < f_max <= 8000 Hz", "got 20, 9000"]),
    ],
)
def test_bad_set_or_log_mel_values_are_one_line(args, fragments, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["audio", "train", "--dataset", "d", *args])
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


@pytest.mark.parametrize("modality", ["audio", "video", "mm"])
@pytest.mark.parametrize("command", ["prepare", "train", "eval"])
def test_the_library_refuses_a_bad_config_with_the_clis_line(
    modality, command, tmp_path, capsys, monkeypatch
):
    """``audio.train(AudioConfig(lr=-1))`` and friends raise the one line the CLI prints for
    ``--set lr=-1``, before anything is read or written."""
    import importlib

    from mmkit.errors import UserInputError

    monkeypatch.chdir(tmp_path)
    args = [modality, command, "--dataset", "d", "--set", "lr=-1"]
    args += ["--checkpoint", "ck"] if command == "eval" else []
    with pytest.raises(SystemExit) as info:
        main(args)
    cli_line = capsys.readouterr().err
    assert info.value.code == 1 and cli_line.startswith("error: --lr must be > 0"), cli_line

    pipeline = importlib.import_module(f"mmkit.pipelines.{modality}")
    cfg = {"audio": AudioConfig, "video": VideoConfig, "mm": MMConfig}[modality]("d", lr=-1.0)
    call = {
        "prepare": lambda: pipeline.prepare(cfg),
        "train": lambda: pipeline.train(cfg),
        "eval": lambda: pipeline.evaluate("ck", cfg),
    }[command]
    with pytest.raises(UserInputError) as exc:
        call()
    assert f"error: {exc.value}\n" == cli_line
    assert list(tmp_path.iterdir()) == []


# -- the docs run as written -------------------------------------------------------------------
def readme_commands() -> list[str]:
    """Every ``mmkit ...`` line in the README's shell code blocks, continuations joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = []
    for lang, block in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang not in ("", "bash", "sh", "shell", "console"):
            continue
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("mmkit "):
                lines.append(line)
    return lines


def check_command_line(line: str) -> None:
    """The command path and every flag exist; a concrete line also parses and, for a command
    with a config, builds and validates it (so --set keys and --config files are real)."""
    tokens = shlex.split(line, comments=True)[1:]
    node, path = TREE, []
    while hasattr(node, "commands") and tokens and tokens[0] in node.commands:
        node = node.commands[tokens[0]]
        path.append(tokens.pop(0))
    assert not hasattr(node, "commands"), f"{line!r}: no command at {' '.join(path)!r}"
    if any(ch in t for t in tokens for ch in "[]|"):  # a synopsis: [--kind backbone|...]
        options = {o: p for p in node.params for o in (*p.opts, *p.secondary_opts)}
        words = [t.strip("[]") for t in tokens]
        for i, word in enumerate(words):
            if word.startswith("-"):
                assert word in options, f"{line!r}: mmkit {' '.join(path)} has no {word}"
                choices = choices_of(options[word])
                following = words[i + 1] if i + 1 < len(words) else ""
                if choices and following and not following.startswith("-"):
                    assert set(following.split("|")) <= set(choices), (line, choices)
        return
    ctx = parse(tuple(path), tokens)
    binding = binding_of(node)
    if binding is not None and binding.config is not None:
        config_from(ctx)


README_LINES = readme_commands()


def test_readme_has_the_documented_commands():
    assert len(README_LINES) >= 15
    assert any(line.startswith("mmkit audio eval") for line in README_LINES)


@pytest.mark.parametrize("line", README_LINES)
def test_readme_command_runs_as_written(line, monkeypatch):
    monkeypatch.chdir(ROOT)  # --config examples/... is relative to the checkout
    check_command_line(line)


def test_the_doc_checker_catches_drift(monkeypatch):
    """The checker fails on the line that used to be in the README, and on bad --set keys."""
    monkeypatch.chdir(ROOT)
    with pytest.raises(Exception, match="classes"):
        check_command_line("mmkit audio eval --checkpoint r --dataset d --classes 12 --json")
    with pytest.raises(Exception, match="epoch"):
        check_command_line("mmkit audio train --dataset d --set epoch=3")
    with pytest.raises(AssertionError, match="--nope"):
        check_command_line("mmkit list [--nope x]")
    with pytest.raises(AssertionError):
        check_command_line("mmkit list [--kind backbone|plugin]")


@pytest.mark.parametrize("path", list(LEAVES), ids=leaf_ids())
def test_each_command_has_one_example_that_runs_as_written(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    epilog = LEAVES[path].epilog or ""
    assert epilog.startswith(f"Example: mmkit {' '.join(path)}"), epilog
    assert "\n" not in epilog.strip()
    check_command_line(epilog.removeprefix("Example: "))


# -- --help -----------------------------------------------------------------------------------
def help_text(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code in (0, None)
    return capsys.readouterr().out


def _default(text: str, option: str) -> str:
    """The ``[default: X]`` of ``option`` in a help screen (rich wraps the description)."""
    start = text.index(f"{option} ")
    rest = text[start:]
    nxt = re.search(r"\n│ +(--|\*)", rest[1:])
    block = rest[: nxt.start() + 1] if nxt else rest
    match = re.search(r"\[default: ([^\]]+)\]", block)
    assert match, block
    return match.group(1)


@pytest.mark.parametrize(
    ("modality", "cls"), [("audio", AudioConfig), ("video", VideoConfig), ("mm", MMConfig)]
)
def test_help_shows_each_modalitys_own_defaults(modality, cls, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    text = help_text([modality, "train"], capsys)
    assert _default(text, "--epochs") == str(cls.epochs)
    assert _default(text, "--batch-size") == str(cls.batch_size)
    assert _default(text, "--lr") == str(cls.lr)
    assert _default(text, "--backbone") == cls.backbone
    assert _default(text, "--weight-decay") == str(cls.weight_decay)
    assert "Example: mmkit" in text


def test_defaults_differ_between_modalities():
    """The per-modality defaults above are not one shared number."""
    assert len({AudioConfig.batch_size, VideoConfig.batch_size}) == 2
    assert len({AudioConfig.lr, VideoConfig.lr, MMConfig.lr}) == 3


@pytest.mark.parametrize(
    ("argv", "option", "shown"),
    [
        (["audio", "train"], "--device", "[auto|cpu|cuda|cuda:N]"),
        (["audio", "train"], "--classes", "<all|12>"),
        (["video", "train"], "--sampling", "<random|uniform>"),
        (["list"], "--kind", "<backbone|preprocessor|layout>"),
    ],
)
def test_help_shows_choices(argv, option, shown, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    text = help_text(argv, capsys)
    line = next(x for x in text.splitlines() if f"{option} " in x)
    assert shown in line


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["video", "train", "--sampling", "sideways"], "'sideways' is not one of"),
        (["audio", "train", "--classes", "13"], "'13' is not one of"),
        (["audio", "train", "--device", "tpu"], "not one of auto, cpu, cuda, cuda:N"),
    ],
)
def test_a_value_outside_the_choices_is_a_usage_error(argv, fragment, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert fragment in " ".join(err.split())  # rich boxes the message; join its lines


def test_device_accepts_one_gpu(tmp_path):
    cfg = config_from(parse(("video", "train"), ["-d", "x", "--device", "cuda:1"]))
    assert cfg.device == "cuda:1"


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys\n"
        "from mmkit.cli.main import main\n"
        "for argv in (['--help'], ['--version'], ['audio', 'train', '--help'],"
        " ['video', 'eval', '--help'], ['mm', 'train', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), (argv, e.code)\n"
        "print('torch' in sys.modules, 'mmkit.pipelines.audio' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False False"


def test_shell_completion_is_on():
    proc = run_cli("--show-completion", "bash", timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "_MMKIT_COMPLETE" in proc.stdout
    words = "mmkit video train --sampling "
    env = {"_MMKIT_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": "4"}
    proc = run_cli(timeout=120, cwd=ROOT, **env)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) >= {"random", "uniform"}
    env = {"_MMKIT_COMPLETE": "complete_bash", "COMP_WORDS": "mmkit au", "COMP_CWORD": "1"}
    assert run_cli(timeout=120, cwd=ROOT, **env).stdout.split() == ["audio"]
