"""The study's schedule on N GPUs (`study.schedule`, `python -m study plan --gpus`): list
scheduling on hand-solvable cases (equal trials, a chain, shares packing a GPU, backfilling),
barriers against pipelining, the jobs a study makes from the cost model, and the command."""
from __future__ import annotations

import re

import pytest

from study.__main__ import main as study_main
from study.plan_schedule import study_jobs
from study.cost import StageCost
from study.halving import Halving
from study.schedule import Job, gate, simulate
from study.spec import get_study
from trainables.config import Recipe
from trainables.devices import Shares, share_of


def test_equal_trials_on_two_gpus():
    four = simulate([Job(f"t{i}", 1.0) for i in range(4)], gpus=2)
    assert four.makespan == 2.0 and four.utilisation == 1.0
    assert sorted(run.start for run in four.runs) == [0.0, 0.0, 1.0, 1.0]
    three = simulate([Job(f"t{i}", 1.0) for i in range(3)], gpus=2)
    assert three.makespan == 2.0 and three.utilisation == 0.75
    assert three.idle(0.0, 2.0) == 1.0 and three.idle(0.0, 1.0) == 0.0


def test_a_dependency_chain_runs_one_after_another():
    chain = simulate([Job("c", 0.5, after=("b",)), Job("b", 2.0, after=("a",)), Job("a", 1.0)],
                     gpus=4)
    assert [(run.job.name, run.start, run.end) for run in chain.runs] == [
        ("a", 0.0, 1.0), ("b", 1.0, 3.0), ("c", 3.0, 3.5)]
    assert chain.makespan == 3.5 and chain.utilisation == pytest.approx(3.5 / (4 * 3.5))
    with pytest.raises(ValueError, match="cycle"):
        simulate([Job("a", 1.0, after=("b",)), Job("b", 1.0, after=("a",))], gpus=1)
    with pytest.raises(ValueError, match="no job"):
        simulate([Job("a", 1.0, after=("z",))], gpus=1)


def test_pipelining_saves_the_wait_at_the_barrier():
    """Two cells on 2 GPUs: x tunes 3 h then finals 1 h, y tunes 1 h then finals 2 h. With a
    barrier the finals start at 3 h (makespan 5); pipelined, y's final starts at 1 h and x's at
    3 h (makespan 4)."""
    tune = [Job("x tune", 3.0, stage="tune"), Job("y tune", 1.0, stage="tune")]
    barriered = simulate(tune + [gate("tune ends", ("x tune", "y tune")),
                                 Job("x final", 1.0, after=("tune ends",)),
                                 Job("y final", 2.0, after=("tune ends",))], gpus=2)
    pipelined = simulate(tune + [Job("x final", 1.0, after=("x tune",)),
                                 Job("y final", 2.0, after=("y tune",))], gpus=2)
    assert barriered.makespan == 5.0 and pipelined.makespan == 4.0
    assert barriered.run_of("tune ends").end == 3.0
    assert barriered.idle(0.0, 3.0) == 2.0 and barriered.idle(3.0, 5.0) == 1.0   # y waits
    assert pipelined.run_of("y final").start == 1.0 and pipelined.idle(0.0, 4.0) == 1.0
    assert barriered.busy == pipelined.busy == 7.0


def test_shares_of_a_half_pack_two_trials_per_gpu():
    halves = simulate([Job(f"t{i}", 1.0, share=0.5) for i in range(4)], gpus=2)
    assert halves.makespan == 1.0 and halves.utilisation == 1.0
    assert sorted(run.gpu for run in halves.runs) == [0, 0, 1, 1]
    thirds = simulate([Job(f"t{i}", 1.0, share=share_of(3)) for i in range(3)], gpus=1)
    assert [run.start for run in thirds.runs] == [0.0, 0.0, 0.0]
    # a whole-GPU trial that does not fit beside a running half waits; a half behind it starts
    mixed = simulate([Job("long half", 2.0, share=0.5), Job("whole", 1.5),
                      Job("short half", 1.0, share=0.5)], gpus=1)
    assert mixed.run_of("short half").start == 0.0 and mixed.run_of("whole").start == 2.0
    assert mixed.makespan == 3.5


def test_halving_runs_the_first_trials_of_a_cell_longest():
    recipe = Recipe("sgd", 1.0, 0.0, epochs=100, warmup_epochs=10, batch_size=64)
    assert Halving().epochs_by_rank(12, recipe) == [100, 99, 33, 33] + [11] * 8


def test_the_demo_s_jobs_cost_what_the_plan_prices_and_wait_for_their_priors():
    spec = get_study("demo")
    jobs = study_jobs(spec, Shares(1.0))
    assumed = spec.first_points()
    tune, final = StageCost(), StageCost()
    for cfg in spec.tune_trials() + spec.tune_trials(assumed):
        tune.add(cfg)
    for cfg in spec.final_trials(assumed):
        final.add(cfg)
    for made in jobs.values():
        trials = [job for job in made if job.share]
        assert len(trials) == tune.total.trials + final.total.trials
        assert sum(job.hours for job in trials if job.stage != "final") == pytest.approx(
            tune.total.gpu_hours)
        assert sum(job.hours for job in trials if job.stage == "final") == pytest.approx(
            final.total.gpu_hours)
    by_name = {job.name: job for job in jobs[False]}
    for job in jobs[False]:
        if job.share and job.cell.strategy == "ft_then_pt":
            # FT-then-PT replays full_ft's run of its task (and seed), tuned or final
            replayed = [by_name[name] for name in job.after if name in by_name
                        and by_name[name].share]
            assert [(j.cell.task, j.cell.strategy, j.stage == "final") for j in replayed] == [
                (job.cell.task, "full_ft", job.stage == "final")]
            if job.stage != "final":
                assert f"selected {'/'.join(job.cell._replace(strategy='full_ft'))}" in job.after
    barriered = [job for job in jobs[True] if job.share]          # the trials, gates left out
    assert all(job.after[0] == {"tune": None, "tune from priors": "tune ends",
                                "final": "tune from priors ends"}[job.stage]
               for job in barriered if job.after)
    assert all(job.after for job in barriered if job.stage != "tune")


def test_plan_simulates_the_schedule_for_the_grid_and_halving(capsys):
    assert study_main(["plan", "demo", "--gpus", "2,8", "--scheduler", "halving"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\| (\d+) \| (grid|halving) \| (barriers|pipelined) \| ([\d.]+) \| "
                      r"(\d+)% \|", out, re.MULTILINE)
    assert {row[:3] for row in rows} == {(gpus, tune, schedule) for gpus in ("2", "8")
                                          for tune in ("grid", "halving")
                                          for schedule in ("barriers", "pipelined")}
    makespan = {row[:3]: float(row[3]) for row in rows}
    for gpus in ("2", "8"):
        assert makespan[gpus, "halving", "barriers"] < makespan[gpus, "grid", "barriers"]
        for tune in ("grid", "halving"):
            assert makespan[gpus, tune, "pipelined"] <= makespan[gpus, tune, "barriers"]
    assert makespan["8", "grid", "barriers"] < makespan["2", "grid", "barriers"]
    assert "pipelining saves: 2 GPUs, grid:" in out and " ends last " in out


def test_plan_refuses_a_schedule_without_gpus(capsys):
    with pytest.raises(SystemExit) as exited:
        study_main(["plan", "demo", "--gpus", "0"])
    assert exited.value.code == 2 and "'0' must be > 0" in capsys.readouterr().err
    assert study_main(["plan", "demo", "--gpus", "2", "--gpus-per-trial", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "error: --gpus simulates trials on GPUs" in err
