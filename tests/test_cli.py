"""The command lines: `--help` on every command and verb, listing, planning, bad input refused
with one line and status 2, a read-only command that neither creates a store nor waits for a
dead one, and the OpenMP setting the driver makes before torch loads."""
from __future__ import annotations

import argparse
import errno
import importlib
import inspect
import os
import subprocess
import sys

import pytest

import analysis.verbs  # noqa: F401  (loaded here: a test's timeout then times the command only)
from analysis.__main__ import main as analysis_main
from common.errors import StudyInputError, exit_status
from common.openmp import SPIN
from study.__main__ import main as study_main


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=120)


def test_list_names_studies_tasks_and_strategies(capsys):
    assert study_main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("demo", "clevr_count", "digits", "vpt_deep", "ft_then_pt", "lora"):
        assert name in out


def test_list_shows_each_study_summary_whole(capsys):
    """Wrapped, never cut mid-word: each study's first sentence, as its docstring has it."""
    from study.spec import all_studies, study_doc
    study_main(["list"])
    listing = " ".join(capsys.readouterr().out.split("tasks (slug")[0].split())
    for name in all_studies():
        summary = " ".join(study_doc(name).split()).split(". ")[0].rstrip(".")
        assert f"{name} {summary}." in listing


def test_plan_counts_trials_per_stage(capsys):
    assert study_main(["plan", "demo"]) == 0
    out = capsys.readouterr().out
    # 7 tasks x (full 2 + prompt 3 x 4 strategies + full 2 (mixed) + lora 2) lrs, 1 wd
    assert "stage tune :    126 trials" in out
    assert "stage final:     98 trials" in out          # 7 x 7 x 2 seeds
    assert study_main(["plan", "demo", "--seeds", "1,2,3"]) == 0
    assert "stage final:    147 trials" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["plan", "nope"], "unknown study 'nope'; valid: demo"),
    (["run", "nope"], "unknown study 'nope'"),
    (["run", "demo", "--cpus-per-trial", "-1"], "must be > 0"),
    (["run", "demo", "--gpus-per-trial", "x"], "'x' is not a number"),
    (["run", "demo", "--gpus-per-trial", "2"], "a trial uses one GPU at most"),
    (["plan", "demo", "--seeds", "4,a"], "seeds must be integers"),
    (["run", "demo", "--seeds", "42,44,42"], "seed 42 given twice"),
    (["pretrain", "paper"], "study 'paper' has no pretraining of its own"),
])
def test_bad_input_is_one_line_and_exit_status_2(argv, message):
    result = run("study", *argv)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


PARSERS = {"study": "build_parser", "tasks": "build_parser", "analysis": "parser",
           "bench": "build_parser"}


def commands_and_verbs():
    """(module, argv) for each command line and each of its commands or verbs."""
    for module, builder in PARSERS.items():
        yield module, []
        parser = getattr(importlib.import_module(f"{module}.__main__"), builder)()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                yield from ((module, [name]) for name in action.choices)


@pytest.mark.parametrize("module, argv", list(commands_and_verbs()),
                         ids=lambda x: x if isinstance(x, str) else " ".join(x) or "-")
def test_help_of_every_command_and_verb_exits_0(module, argv, capsys):
    main = importlib.import_module(f"{module}.__main__").main
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {module}")


def test_analysis_table_of_an_unknown_study_is_refused(tmp_path):
    from mlflow.tracking import MlflowClient
    MlflowClient(f"sqlite:///{tmp_path}/m.db").search_experiments()     # a store, empty
    result = subprocess.run([sys.executable, "-m", "analysis", "table", "nope", "--tracking-uri",
                             f"sqlite:///{tmp_path}/m.db"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "no MLflow experiment 'nope'" in result.stderr.strip().splitlines()[-1]


def test_tasks_refuses_bad_input_in_one_line_too():
    result = run("tasks", "prepare", "nope")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown task 'nope'"), result.stderr


def _raise(error):
    raise error


@pytest.mark.parametrize("body, status, line", [
    (lambda: 3, 3, None),
    (lambda: _raise(StudyInputError("no such thing")), 2, "error: no such thing"),
    (lambda: _raise(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/cache/x")), 2,
     "free space there and run the same command again"),
    (lambda: _raise(KeyboardInterrupt()), 130, "interrupted: what finished is kept"),
])
def test_every_command_line_ends_through_one_error_path(body, status, line, capsys):
    """`python -m study`, `tasks` and `analysis` all end through `exit_status`."""
    import analysis.__main__
    import study.__main__
    import tasks.__main__
    for module in (study.__main__, tasks.__main__, analysis.__main__):
        assert "exit_status(" in inspect.getsource(module.main)
    assert exit_status(body) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ([] if line is None else [err[0]]) and (line is None or line in err[0])


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        exit_status(lambda: 1 / 0)


def analysis_refusal(capsys, tmp_path, uri: str) -> str:
    code = analysis_main(["table", "demo", "--tracking-uri", uri, "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not (tmp_path / "out").exists()
    return lines[0]


@pytest.mark.timeout(30)          # a guard against a hang, with the imports done already
def test_a_read_only_command_never_creates_a_store(tmp_path, capsys):
    typo = tmp_path / "typo" / "mlflow.db"
    line = analysis_refusal(capsys, tmp_path, f"sqlite:///{typo}")
    assert f"no MLflow store at {typo}" in line
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("uri, says", [
    ("http://127.0.0.1:{port}", "MLflow server http://127.0.0.1:{port} does not answer"),
    ("postgresql://postgres@127.0.0.1:{port}/mlflow",
     "postgresql database at 127.0.0.1:{port} does not answer"),
])
@pytest.mark.timeout(30)
def test_a_read_only_command_gives_up_on_a_dead_store_at_once(tmp_path, capsys, uri, says):
    from tests.servers import free_port
    port = free_port()                            # nothing listens there
    assert says.format(port=port) in analysis_refusal(capsys, tmp_path, uri.format(port=port))


def test_the_installed_project_imports_from_any_directory_without_pythonpath(tmp_path):
    """What a Ray worker started elsewhere relies on (`pip install -e .`)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", "import study.protocol, analysis.verbs; "
                             "print(study.protocol.__file__)"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(os.path.join("study", "protocol.py"))


@pytest.mark.parametrize("given, expected", [(None, SPIN), ("5", "5")])
def test_the_driver_sets_a_short_openmp_spin_before_torch_loads(given, expected):
    watch = ("import os, sys\n"
             "seen = []\n"
             "class Watch:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name == 'torch' and not seen:\n"
             "            seen.append(os.environ.get('GOMP_SPINCOUNT'))\n"
             "sys.meta_path.insert(0, Watch())\n"
             "import study.__main__, torch\n"
             "print(seen[0])\n")
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    env.update({"GOMP_SPINCOUNT": given} if given else {})
    done = subprocess.run([sys.executable, "-c", watch], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.split()[-1] == expected


def test_the_eta_counts_rounds_of_trials_running_together():
    from study.ray_runner import remaining_seconds
    assert remaining_seconds(4.0, 1, 104, 2) == 208.0      # 52 rounds of two 4 s trials
    assert remaining_seconds(8.0, 2, 3, 2) == 8.0          # a last round of one trial
    assert remaining_seconds(5.0, 1, 1, 0) == 5.0          # no slot seen: one at a time
    assert remaining_seconds(10.0, 5, 0, 4) == 0.0


def test_help_of_analysis_and_every_verb_exits_0(capsys):
    from analysis.__main__ import main as analysis_main
    from analysis.verb import all_verbs
    for argv in (["--help"], *([name, "--help"] for name in all_verbs())):
        with pytest.raises(SystemExit) as exit:
            analysis_main(argv)
        assert exit.value.code == 0, argv
        assert "usage:" in capsys.readouterr().out
