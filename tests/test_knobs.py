"""Strategies' own knobs: declared with a type, a default and searched values; a study fixes,
tables or searches them; bad knobs on the command line are refused in one line before anything
starts; and a new strategy with a searched knob is one new file, run through a smoke study with
no other edit."""
from __future__ import annotations

import textwrap
from pathlib import Path
from types import MappingProxyType

import pytest
from mlflow.tracking import MlflowClient

import trainables.strategies
from common.errors import StudyInputError
from search_spaces import PROJECT_LENGTHS, Grid, SearchSpace, prompt_lengths
from study.__main__ import main as study_main
from study.spec import Point, StudySpec, get_study
from tests.conftest import TINY_VIT
from trainables.strategy import STRATEGIES, Knob

SPACE = SearchSpace("knobs", MappingProxyType({
    "full": Grid("k_full", "adamw", (0.002,), (0.0,)),
    "prompt": Grid("k_prompt", "sgd", (2.5, 0.5), (0.0,)),
    "lora": Grid("k_lora", "adamw", (0.01,), (0.0,)),
}), prompt_lengths(PROJECT_LENGTHS))


def spec(**changes) -> StudySpec:
    fields = dict(name="knobs", tasks=("digits", "count"), strategies=("vpt_deep", "lora"),
                  backbones=(TINY_VIT,), search_space=SPACE, epochs=1, warmup_epochs=0,
                  seeds=(42,))
    return StudySpec(**{**fields, **changes})


def test_a_knob_is_fixed_per_task_or_searched_as_the_study_says():
    plain = spec()
    choices = {c.knob.name: c for s in plain.strategies for c in plain.knob_choices(s)}
    assert choices["prompt_length"].mode == "per task"
    assert choices["lora_rank"].mode == "fixed" and choices["lora_rank"].value == 8
    assert len(plain.points("vpt_deep")) == 2 and len(plain.points("lora")) == 1
    searched = spec(knobs={"lora.lora_rank": (2, 4, 8), "prompt_length": 3})
    assert searched.points("lora") == [Point(0.01, 0.0, (("lora_rank", r),)) for r in (2, 4, 8)]
    trials = [c for c in searched.tune_trials() if c.strategy == "lora"]
    assert sorted(c.knob("lora_rank") for c in trials) == [2, 2, 4, 4, 8, 8]   # x 2 tasks
    assert {c.searched for c in trials} == {("lora_rank",)}
    assert len({c.trial_id for c in trials}) == 6
    vpt = [c for c in searched.tune_trials() if c.strategy == "vpt_deep"]
    assert {c.knob("prompt_length") for c in vpt} == {3}          # fixed for every task
    assert spec(knobs={"lora_alpha": 1}).tune_trials()[-1].knob("lora_alpha") == 1.0


def test_a_selected_point_carries_its_knobs_into_the_final_stage():
    searched = spec(strategies=("lora",), knobs={"lora_rank": (2, 4)})
    cell = searched.cells()[0]
    final = searched.final_trials({cell: Point(0.01, 0.0, (("lora_rank", 4),))})
    assert [c.knob("lora_rank") for c in final] == [4]
    assert searched.point_of(final[0]) == Point(0.01, 0.0, (("lora_rank", 4),))


@pytest.mark.parametrize("knobs, message", [
    ({"no_such_knob": 4}, "no strategy of it takes a knob 'no_such_knob'"),
    ({"lora.prompt_length": 4}, "no strategy 'lora' of it takes a knob 'prompt_length'"),
    ({"lora_rank": "four"}, "knob 'lora_rank' takes int, got 'four'"),
    ({"lora_rank": 2.5}, "knob 'lora_rank' takes int, got 2.5"),
    ({"lora_rank": ()}, "knob 'lora_rank' searches no values"),
])
def test_a_study_refuses_a_knob_that_does_not_exist_or_a_value_of_the_wrong_type(knobs, message):
    with pytest.raises(StudyInputError, match=message):
        spec(knobs=knobs)


@pytest.mark.parametrize("argv, message", [
    (["plan", "demo", "--knob", "nope=3"], "no strategy of it takes a knob 'nope'"),
    (["explain", "demo", "--knob", "lora_rank=abc"], "knob 'lora_rank' takes int, got 'abc'"),
    (["run", "demo", "--knob", "full_ft.lora_rank=4"],
     "no strategy 'full_ft' of it takes a knob 'lora_rank'"),
    (["run", "demo", "--smoke", "--knob", "lora_rank=4"], "no strategy of it takes a knob"),
    (["plan", "demo", "--knob", "lora_rank"], "a knob is NAME=VALUE"),
])
def test_bad_knobs_on_the_command_line_get_one_line_and_status_2(argv, message, capsys,
                                                                  tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                  # nothing may be written, here included
    try:
        status = study_main(argv)
    except SystemExit as exit:                   # argparse's own refusal
        status = exit.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_searched_knobs_show_in_the_plan_and_on_the_card(capsys):
    assert study_main(["plan", "demo", "--knob", "lora_rank=2,4", "--knob",
                       "vpt_deep.prompt_length=1,2,4"]) == 0
    out = capsys.readouterr().out
    assert "x lora_rank (2, 4) = 4 points" in out and "x prompt_length (1, 2, 4) = 9 points" in out
    from study.card import rows
    card = {(r["setting"], r["strategy"]): r for r in
            rows(get_study("demo").with_knobs({"lora_rank": ("2", "4")}))}
    assert card[("lora_rank", "lora")]["value"] == "searched: (2, 4)"
    assert card[("prompt_length", "vpt_deep")]["value"].startswith("per task (project): photos=4")
    assert card[("prompt_dropout", "vpt_deep")]["source"].startswith("VPT-or-FT README.md")


TOY = '''
"""A toy strategy for the test that adds it: the linear probe on features scaled by a knob."""
import torch
from torch import nn

from trainables.strategy import Knob, Strategy, head_only, register


class Scaled(nn.Module):
    def __init__(self, head, scale):
        super().__init__()
        self.head, self.scale = head, scale

    def forward(self, x):
        return self.head(x * self.scale)


def adapt(model, cfg):
    model.head = Scaled(model.head, cfg.knob("feature_scale"))
    return model


STRATEGY = register(Strategy("toy_scaled_probe", grid="prompt", trains=head_only, adapt=adapt,
                             knobs=(Knob("feature_scale", float, 1.0, search=(0.5, 2.0)),)))
'''


@pytest.fixture
def toy_strategy():
    """The toy strategy's module written into the strategies package (as a contributor would),
    removed afterwards."""
    path = Path(trainables.strategies.__path__[0]) / "toy_scaled_probe.py"
    path.write_text(textwrap.dedent(TOY))
    try:
        yield "toy_scaled_probe"
    finally:
        path.unlink()
        STRATEGIES.pop("toy_scaled_probe", None)


def test_a_new_strategy_with_a_searched_knob_is_one_file_and_runs_in_a_smoke_study(
        toy_strategy, tmp_path, cache_dir):
    from study.protocol import run_study
    from study.ray_runner import RayRunner
    from study.tracking import StudyTracker
    toy = spec(name="toy", tasks=("digits",), strategies=(toy_strategy,))
    assert len(toy.points(toy_strategy)) == 2 * 2             # 2 lrs x 2 feature scales
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = StudyTracker(toy.name, uri)
    runner = RayRunner(tracker, storage_path=str(tmp_path / "ray"))
    try:
        table = run_study(toy, runner, tracker, cache_dir, log=lambda line: None)
    finally:
        runner.shutdown()
    runs = MlflowClient(uri).search_runs([tracker.experiment_id])
    tune = [r for r in runs if r.data.tags.get("stage") == "tune"]
    final = [r for r in runs if r.data.tags.get("stage") == "final"]
    assert len(tune) == 4 and len(final) == 1
    assert {r.info.status for r in tune + final} == {"FINISHED"}
    assert {r.data.params["feature_scale"] for r in tune} == {"0.5", "2.0"}
    assert all("feature_scale=" in r.data.tags["mlflow.runName"] for r in tune)
    chosen = next(r for r in tune if r.data.tags.get("selected") == "true")
    assert final[0].data.params["feature_scale"] == chosen.data.params["feature_scale"]
    assert final[0].data.tags["selected_from"] == chosen.info.run_id
    assert "digits" in table.render("markdown")


def test_a_knob_declaration_checks_its_own_default_and_values():
    with pytest.raises(StudyInputError, match="takes int"):
        Knob("width", int, 4, search=(4, 8.5))
    assert Knob("flag", bool, False).parse("yes") is True
    assert Knob("alpha", float, None).parse(None) is None


def test_a_task_no_paper_lists_takes_the_projects_prompt_length_and_the_card_says_so(capsys):
    """The paper's table lacks the demo tasks: the project's table (kept apart from the paper's
    numbers) gives their lengths, and the card names it for each."""
    from search_spaces import VPT_LENGTHS
    study = spec(search_space=SearchSpace("paper-lengths", SPACE.grids,
                                          prompt_lengths(VPT_LENGTHS)))
    choice = next(c for c in study.knob_choices("vpt_deep") if c.knob.name == "prompt_length")
    assert choice.table_for("digits") is PROJECT_LENGTHS
    assert choice.for_task("digits") == PROJECT_LENGTHS.values["digits"]
    assert choice.for_task("cifar100") == VPT_LENGTHS.values["cifar100"]
    assert choice.table_for("an_imported_task") is None          # the knob's default
    from study.card import _table_note
    assert "prompt_lengths_project.csv" in _table_note(choice, "digits")


def test_a_built_in_task_with_no_prompt_length_anywhere_is_refused_saying_where_it_goes(
        monkeypatch):
    import study.spec
    monkeypatch.setattr(study.spec, "PROJECT_TABLES", {})
    choice = next(c for c in spec().knob_choices("vpt_deep") if c.knob.name == "prompt_length")
    with pytest.raises(StudyInputError, match="no prompt_length for task 'cifar100'.*"
                                              "search_spaces/data/"):
        choice.for_task("cifar100")


def test_the_papers_length_tables_hold_only_the_papers_tasks_and_the_projects_none_of_them():
    from search_spaces import TABLES_16_18, VPT_LENGTHS
    from tasks import SUITES
    paper = set(SUITES["vtab1k"]) | set(SUITES["fgvc"])
    assert set(VPT_LENGTHS.values) == paper
    assert set(TABLES_16_18.values) <= paper
    assert not set(PROJECT_LENGTHS.values) & paper
