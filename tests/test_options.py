"""One option schema (issue 21): the training options are the config dataclasses' fields; the CLI's train-gan /
train-sr flags and the Train tab's job specs are derived from them, so defaults, choices and names cannot drift."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from transmrsr.cli import build_parser
from transmrsr.config import GANTrainConfig, SRTrainConfig
from transmrsr.jobs import Stage1Spec, Stage2Spec
from transmrsr.options import cli_fields, from_args, to_args

COMMANDS = {"train-gan": GANTrainConfig, "train-sr": SRTrainConfig}


def parse(command: str, argv: list[str]):
    return build_parser().parse_args([command, *argv])


@pytest.mark.parametrize("command", COMMANDS)
def test_a_minimal_command_line_gives_the_dataclass_defaults(command):
    cls = COMMANDS[command]
    minimal = ["--data", "D", "--out", "O"] + (["--scale", "4"] if cls is SRTrainConfig else [])
    got = from_args(cls, parse(command, minimal))
    want = cls(data="D", out="O", **({"scale": 4} if cls is SRTrainConfig else {}))
    assert got == want


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_field_is_a_flag_with_its_choices(command):
    cls = COMMANDS[command]
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    actions = {a.dest: a for a in sub._actions}
    for f, _, flag in cli_fields(cls):
        assert f.name in actions and flag in actions[f.name].option_strings, f.name
        if f.metadata.get("choices"):
            assert list(actions[f.name].choices) == list(f.metadata["choices"])
    # and nothing else: the parser has no training flag the config does not declare
    assert set(actions) - {"help", "func"} == {f.name for f, _, _ in cli_fields(cls)}


def test_ablation_choices_are_the_configs_ablations():
    f = next(f for f, _, _ in cli_fields(SRTrainConfig) if f.name == "ablation")
    assert tuple(f.metadata["choices"]) == tuple(SRTrainConfig.ABLATIONS) == Stage2Spec.ABLATIONS
    assert "frozen-gp" in Stage2Spec.ABLATIONS  # Table 4's frozen prior, missing from the Train tab before


def test_non_default_configs_round_trip_through_the_command_line():
    sr = SRTrainConfig(
        data="a b/data",
        out="runs/x",
        preset="tiny",
        img_size=32,
        batch_size=3,
        max_steps=17,
        val_fraction=0.0,
        seed=5,
        checkpoint_every=9,
        log_every=2,
        augment=False,
        gan="g",
        init="i",
        scale=8,
        thick_axis=0,
        profile="gaussian",
        epochs=7,
        lr=3.3e-5,
        lr_step_epochs=2,
        perceptual=False,
        vgg_weights="v.safetensors",
        phi=0.25,
        ablation="frozen-gp",
        val_data="val",
        acquisition="realistic",
        arch="transmrsr",
    )
    assert from_args(SRTrainConfig, parse("train-sr", to_args(sr))) == sr
    gan = GANTrainConfig(data="d", out="o", lr_g=1e-3, lr_d=5e-4, sample_every=0, max_steps=3, val_fraction=0.25)
    assert from_args(GANTrainConfig, parse("train-gan", to_args(gan))) == gan
    # defaults are left out: the command line says only what differs
    assert to_args(SRTrainConfig(data="d", out="o", scale=4)) == ["--data", "d", "--out", "o"]


def test_job_specs_run_the_config_they_describe(tmp_path: Path):
    data, gen = tmp_path / "data", tmp_path / "gan"
    s2 = Stage2Spec(
        data=str(data),
        out=str(tmp_path / "o"),
        gan=str(gen),
        scale=8,
        epochs=3,
        perceptual=False,
        ablation="frozen-gp",
        preset="tiny",
        batch_size=2,
    )
    args = s2.args()
    assert args[0] == "train-sr"
    cfg = from_args(SRTrainConfig, parse("train-sr", args[1:]))
    assert cfg == s2.config()
    assert (cfg.ablation, cfg.scale, cfg.epochs, cfg.perceptual, cfg.preset) == ("frozen-gp", 8, 3, False, "tiny")
    assert cfg.gan == str(gen.resolve()) and cfg.data == str(data.resolve())
    s1 = Stage1Spec(data=str(data), out=str(tmp_path / "g"), max_steps=5, sample_every=0, img_size=32)
    g = from_args(GANTrainConfig, parse("train-gan", s1.args()[1:]))
    assert (g.max_steps, g.sample_every, g.img_size) == (5, 0, 32)
    # every field a spec shares with its config reaches the command line
    shared = {f.name for f in dataclasses.fields(Stage2Spec)} & {f.name for f, _, _ in cli_fields(SRTrainConfig)}
    assert shared >= {"data", "out", "preset", "img_size", "batch_size", "max_steps", "gan", "scale", "ablation"}
