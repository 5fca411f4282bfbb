"""A study without Python: a TOML file (`python -m study plan my-study.toml`) or flags over a
registered study or a file give a `StudySpec` built from a base preset with some settings
replaced; a file and the flags that say the same thing give the same spec and trial ids; the
protocol card says which values the file or the command line set; an unknown key or name is one
`error:` line and exit status 2 before anything starts. Uses a task imported here from a folder
of small generated images (no training)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from study.__main__ import build_parser, study_of
from study.__main__ import main as study_main
from study.card import rows
from study.spec import get_study
from study.studies import DEMO_BACKBONE, DEMO_UPSTREAM, VIT_B16_IN21K
from tasks.__main__ import main as tasks_main
from tests.test_import import image_folder

STUDY = """\
base = "demo"
name = "leaves-vs-ft"
tasks = ["mine"]
strategies = ["full_ft", "vpt_deep", "lora"]
backbone = "demo-vit-32"
epochs = 3
seeds = [42, 44]
settings = ["12"]
scheduler = "halving"

[knobs]
lora_rank = [2, 8]
"""
SAME_FLAGS = ["--name", "leaves-vs-ft", "--tasks", "mine", "--strategies",
              "full_ft,vpt_deep,lora", "--backbone", "demo-vit-32", "--epochs", "3", "--seeds",
              "42,44", "--settings", "12", "--scheduler", "halving", "--knob", "lora_rank=2,8"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache holding 'mine', imported from a folder of 3 classes at 32 px, 12 train images."""
    root = tmp_path_factory.mktemp("imported")
    data = image_folder(root / "data", {"cat": 10, "dog": 10, "eel": 10})
    assert tasks_main(["import", "mine", "--from-folder", str(data), "--cache-dir",
                       str(root / "cache"), "--image-size", "32", "--train-size", "12"]) == 0
    return root / "cache"


@pytest.fixture
def write(tmp_path, cache, monkeypatch):
    """Write a study file; imported tasks are looked up in `cache`."""
    monkeypatch.setenv("VPT_CACHE_DIR", str(cache))

    def to(text: str, name: str = "my-study.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return to


def composed(*argv):
    """(spec, scheduler) of a `study plan ARGV` command line, as the command builds them."""
    return study_of(build_parser().parse_args(["plan", *map(str, argv)]))


def trial_ids(spec) -> list[str]:
    first = spec.first_points()
    return sorted(c.trial_id for c in spec.tune_trials() + spec.tune_trials(first)
                  + spec.final_trials(first))


def test_a_study_file_over_a_base_gives_the_expected_spec(write):
    spec, scheduler = composed(write(STUDY))
    demo = get_study("demo")
    assert spec == replace(demo, name="leaves-vs-ft", tasks=("mine",),
                           strategies=("full_ft", "vpt_deep", "lora"), epochs=3, seeds=(42, 44),
                           settings=("12",), knobs={**demo.knobs, "lora_rank": (2, 8)})
    assert spec.upstream == DEMO_UPSTREAM and spec.backbones == (DEMO_BACKBONE,)
    assert scheduler == "halving"
    assert [len(spec.points(s)) for s in spec.strategies] == [2, 3, 4]     # lora x rank 2, 8
    cfg = spec.tune_trials()[0]
    assert (cfg.study, cfg.task, cfg.train_split, cfg.eval_split, cfg.recipe.epochs) == (
        "leaves-vs-ft", "mine", "train12", "val3", 3)
    vpt = next(c for c in spec.tune_trials() if c.strategy == "vpt_deep")
    assert vpt.knob("prompt_length") == 10      # no table lists an imported task: the default


def test_the_name_is_the_files_stem_and_the_backbone_brings_its_own_pretraining(write):
    spec, scheduler = composed(write('base = "paper"\ntasks = "mine"\nsettings = "12"\n'
                                     'backbone = "demo-vit-32"\n', "leaf-study.toml"))
    assert (spec.name, spec.upstream, spec.search_space.name, scheduler) == (
        "leaf-study", DEMO_UPSTREAM, "paper", "grid")
    spec, _ = composed(write('tasks = "mine"\nsettings = "12"\nbackbone = "vit_b16-in21k"\n'))
    assert spec.backbones == (VIT_B16_IN21K,) and spec.upstream is None    # base: demo


def test_flags_that_say_what_the_file_says_give_the_same_spec_and_trial_ids(write):
    from_file, file_scheduler = composed(write(STUDY))
    from_flags, flag_scheduler = composed("demo", *SAME_FLAGS)
    assert from_flags == from_file and flag_scheduler == file_scheduler
    assert trial_ids(from_flags) == trial_ids(from_file) and len(trial_ids(from_file)) == 15
    # flags apply over a file: the later layer wins
    over, scheduler = composed(write(STUDY), "--epochs", "4", "--scheduler", "grid")
    assert (over.epochs, over.tasks, scheduler) == (4, ("mine",), "grid")


def test_the_card_says_which_values_the_file_and_the_command_line_set(write):
    spec, _ = composed(write(STUDY), "--seeds", "7")
    card = {(r["setting"], r["strategy"]): r["source"] for r in rows(spec)}
    file = "set in my-study.toml"
    for key in [("tasks", "all"), ("strategies", "all"), ("epochs", "full_ft"),
                ("epochs", "lora"), ("lora_rank", "lora"), ("backbone", "all"),
                ("splits", "all")]:
        assert card[key] == file, key
    assert card[("seeds", "all")] == "set on the command line"
    assert not card[("warm-up epochs", "lora")].startswith("set ")          # the base's
    assert card[("prompt_dropout", "vpt_deep")].startswith("VPT-or-FT README.md")  # the base's
    untouched = [r for r in rows(get_study("demo")) if r["source"].startswith("set ")]
    assert untouched == []                       # a preset's card as before


def test_a_knob_for_one_strategy_is_marked_on_that_strategy_only(write):
    spec, _ = composed(write('tasks = "mine"\nsettings = "12"\n'
                             'strategies = ["vpt_deep", "vpt_shallow"]\n'
                             '[knobs.vpt_deep]\nprompt_dropout = 0.0\n'))
    card = {(r["setting"], r["strategy"]): (r["value"], r["source"]) for r in rows(spec)}
    assert card[("prompt_dropout", "vpt_deep")] == ("0.0", "set in my-study.toml")
    assert card[("prompt_dropout", "vpt_shallow")][0] == "0.1"
    assert card[("prompt_dropout", "vpt_shallow")][1] != "set in my-study.toml"


@pytest.mark.parametrize("text, flags, message", [
    ('epoch = 3\n', [], "my-study.toml: unknown key 'epoch'; valid: backbone, base, "),
    ('strategies = ["full_ft", "vpt_dep"]\n', [], "unknown strategy 'vpt_dep'; valid: "),
    ('tasks = ["mine", "leaves"]\n', [], "unknown task 'leaves'; valid: "),
    ('backbone = "vit-b"\n', [], "unknown backbone 'vit-b'; valid: clip-vitb16, demo-vit-32, "),
    ('search_space = "fast"\n', [], "unknown search space 'fast'; valid: demo, "),
    ('base = "demo2"\n', [], "base: unknown study 'demo2'; valid: demo, "),
    ('[knobs]\nlora_rnk = 4\n', [], "no strategy of it takes a knob 'lora_rnk'; its "),
    ('epochs = "three"\n', [], "epochs: a whole number >= 1 is needed"),
    ('tasks = ["mine"\n', [], "my-study.toml is not TOML"),
    ('tasks = "digits"\nsettings = "12"\n', [], "task 'digits' has no split for train size 12"),
    ('tasks = "mine"\n', ["--strategies", "full_ft,lora_x"], "command line: strategies: "
                                                             "unknown strategy 'lora_x'"),
])
def test_an_unknown_name_is_one_error_line_and_exit_2(write, capsys, text, flags, message):
    status = study_main(["plan", str(write(text)), *flags])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""                      # refused before anything started
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def test_a_missing_file_and_a_bad_name_are_refused(write, capsys):
    assert study_main(["explain", "nowhere.toml"]) == 2
    assert capsys.readouterr().err.startswith("error: no study file nowhere.toml")
    assert study_main(["explain", str(write('name = "my study"\n'))]) == 2
    assert "a study name is letters, digits" in capsys.readouterr().err


def test_explain_and_plan_read_the_file(write, capsys):
    path = write(STUDY)
    assert study_main(["explain", str(path), "--format", "csv"]) == 0
    card = capsys.readouterr().out
    assert "epochs,full_ft,3,set in my-study.toml" in card
    assert "lora_rank,lora,\"searched: (2, 8)\",set in my-study.toml" in card
