"""A study composed without Python: a registered study (the base) with some of its settings
replaced, from a TOML file (`python -m study run my-study.toml`) or from flags on `study plan |
explain | run` (`--tasks mine --strategies full_ft,lora`). Both become `Overrides` (setting ->
value, and who set it), parsed by the same functions and applied by one, `compose`, so a file and
the flags that say the same thing give the same `StudySpec` and the same trial ids; flags apply
after the file. Each setting keeps who set it ("set in my-study.toml", "set on the command
line") for the protocol card. Unknown keys and names are one `error:` line naming the known ones,
before anything starts."""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from common.errors import StudyInputError, UnknownName
from search_spaces import get_search_space
from study.spec import StudySpec, get_backbone, get_study
from tasks import get_task
from tasks.splits import setting_splits, supports
from trainables.strategy import get_strategy

DEFAULT_BASE = "demo"
SCHEDULERS = ("grid", "halving")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _names(value: Any, what: str) -> tuple[str, ...]:
    """A list of names: a TOML array of strings, or text separated by commas."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise StudyInputError(f"{what} is a list of names, got {value!r}")
    names = tuple(i.strip() for i in items if i.strip())
    if not names:
        raise StudyInputError(f"no {what} given")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise StudyInputError(f"{what}: {', '.join(twice)} given twice")
    return names


def _checked(what: str, lookup: Callable[[str], Any]) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        names = _names(value, what)
        for name in names:
            lookup(name)                       # UnknownName: one line with the known names
        return names
    return parse


def _whole(least: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise StudyInputError(f"a whole number >= {least} is needed, got {value!r}")
        return value
    return parse


def parse_seeds(value: Any) -> tuple[int, ...]:
    """Final-stage seeds: a TOML array of integers or "42,44"; each seed is one run per cell."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        seeds = tuple(int(s) if isinstance(s, str) else s for s in items if str(s).strip())
    except (TypeError, ValueError):
        raise StudyInputError(f"seeds must be integers separated by commas, got "
                              f"'{value}'") from None
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise StudyInputError(f"seeds must be integers, got {value!r}")
    if not seeds:
        raise StudyInputError("no seeds given")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise StudyInputError(f"seed{'s' * (len(twice) > 1)} {', '.join(map(str, twice))} given "
                              f"twice; each seed is one run per cell")
    return seeds


def _known(lookup: Callable[[str], Any]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        lookup(_text(value))
        return value.strip()
    return parse


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StudyInputError(f"text is needed, got {value!r}")
    return value.strip()


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise StudyInputError(f"a study name is letters, digits, '_', '-' and '.' (it names the "
                              f"MLflow experiment and analysis_out/<name>/), got {value!r}")
    return value


def _knobs(value: Any) -> dict[str, Any]:
    """Knob -> value (fixed) or list of values (searched): a TOML table, whose sub-tables are
    per strategy ([knobs.adaptformer] bottleneck = 8 is adaptformer.bottleneck), or the
    command line's NAME=VALUE pairs."""
    if not isinstance(value, Mapping):
        raise StudyInputError(f"knobs is a table of knob = value, got {value!r}")
    flat = {}
    for key, given in value.items():
        if isinstance(given, Mapping):
            flat.update({f"{key}.{k}": v for k, v in _knobs(given).items()})
        elif isinstance(given, (list, tuple)) and not given:
            raise StudyInputError(f"knob '{key}' searches no values")
        else:
            flat[key] = tuple(given) if isinstance(given, list) else given
    return flat


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise StudyInputError(f"one of {', '.join(choices)} is needed, got {value!r}")
        return value
    return parse


@dataclass(frozen=True)
class Setting:
    parse: Callable[[Any], Any]           # a TOML value or a flag's text -> the study's value
    help: str


SETTINGS: dict[str, Setting] = {
    "name": Setting(_name, "the study's name, its MLflow experiment (`python -m analysis table "
                           "NAME`); default: the file's stem, or the base's name"),
    "description": Setting(_text, "one line on what the study is for"),
    "tasks": Setting(_checked("tasks", get_task), "task names: built-in ones (`python -m study "
                     "list`) or imported ones (`python -m tasks import`)"),
    "strategies": Setting(_checked("strategies", get_strategy), "strategy names"),
    "backbone": Setting(_checked("backbone", get_backbone), "a registered backbone (or several), "
                        "by the tag `python -m study list` shows, or any timm ViT as timm:NAME "
                        "(e.g. timm:vit_base_patch16_clip_224.openai)"),
    "weights": Setting(_text, "the backbone's weights file (safetensors, .pth or .npz; relative: "
                              "under the cache dir) in place of its own or timm's hub"),
    "search_space": Setting(_known(get_search_space), "the lr x wd grids by name (demo, smoke, "
                                                      "paper, petl, ...)"),
    "scheduler": Setting(_one_of(SCHEDULERS), "the tune stage: grid (every point to the end) or "
                                              "halving"),
    "epochs": Setting(_whole(1), "training epochs of every trial"),
    "warmup_epochs": Setting(_whole(0), "warm-up epochs (where the grid does not set its own)"),
    "seeds": Setting(parse_seeds, "final-stage seeds"),
    "settings": Setting(_checked("settings", setting_splits), "train sizes: 800 (VTAB-1k), an "
                        "imported task's own --train-size, 1shot, full"),
    "knobs": Setting(_knobs, "strategy knobs: lora_rank = 4, or a list to search beside lr and "
                             "wd; [knobs.adaptformer] for one strategy's"),
}
FILE_ONLY = {"base": "the registered study every setting the file leaves out comes from "
                     f"(default: {DEFAULT_BASE})"}


@dataclass(frozen=True)
class Overrides:
    """Settings given by one source, parsed; `where` names it in errors, `origin` on the card."""
    where: str
    origin: str
    values: Mapping[str, Any]

    @classmethod
    def given(cls, raw: Mapping[str, Any], where: str, origin: str) -> "Overrides":
        values = {}
        for key, value in raw.items():
            try:
                values[key] = SETTINGS[key].parse(value)
            except StudyInputError as error:
                raise StudyInputError(f"{where}: {key}: {error}") from None
        return cls(where, origin, values)


def from_flags(raw: Mapping[str, Any]) -> Overrides:
    """The settings given as flags (None: not given)."""
    return Overrides.given({k: v for k, v in raw.items() if v is not None},
                           "command line", "set on the command line")


@dataclass(frozen=True)
class StudyFile:
    base: str
    overrides: Overrides


def read_file(path: str | Path) -> StudyFile:
    """A study file: TOML with `base` and any of SETTINGS; its name defaults to its stem."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = tomllib.load(file)
    except FileNotFoundError:
        raise StudyInputError(f"no study file {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise StudyInputError(f"{path.name} is not TOML: {error}") from None
    base = raw.pop("base", DEFAULT_BASE)
    if not isinstance(base, str):
        raise StudyInputError(f"{path.name}: base is a study name, got {base!r}")
    raw.setdefault("name", path.stem)
    unknown = sorted(set(raw) - set(SETTINGS))
    if unknown:
        known = UnknownName("key", unknown[0], [*SETTINGS, *FILE_ONLY])
        raise StudyInputError(f"{path.name}: {known}")
    return StudyFile(base, Overrides.given(raw, path.name, f"set in {path.name}"))


def is_file(study: str) -> bool:
    return study.endswith(".toml")


def compose(base: StudySpec, *layers: Overrides) -> StudySpec:
    """The base with each layer's settings applied in turn (a later layer wins), and who set
    each recorded in `origins`. The scheduler is not part of the spec (`scheduler`)."""
    changes: dict[str, Any] = {}
    origins = dict(base.origins)
    for layer in layers:
        for key, value in layer.values.items():
            if key not in ("knobs", "scheduler"):
                changes[key] = value
                origins[key] = layer.origin
    if "backbone" in changes:
        chosen = [get_backbone(name) for name in changes.pop("backbone")]
        backbones = tuple(backbone for backbone, _ in chosen)
        changes["backbones"] = backbones
        if backbones != base.backbones:         # pretrained as registered (the demo's ViT)
            changes["upstream"] = next((up for _, up in chosen if up), None)
    if "weights" in changes:
        changes.update(_with_weights(changes.pop("weights"),
                                     changes.get("backbones", base.backbones)))
    if "search_space" in changes:
        changes["search_space"] = get_search_space(changes["search_space"])
    spec = replace(base, **changes, origins=tuple(origins.items()))
    if "tasks" in changes or "settings" in changes:
        _every_task_runs(spec)
    for layer in layers:
        given = layer.values.get("knobs", {})
        try:
            typed = {key: _typed(spec, key, value) for key, value in given.items()}
        except StudyInputError as error:
            raise StudyInputError(f"{layer.where}: knobs: {error}") from None
        spec = replace(spec.with_knobs(typed), origins=spec.origins + tuple(
            (f"knobs.{key}", layer.origin) for key in typed))
    return spec


def _with_weights(weights: str, backbones: tuple) -> dict[str, Any]:
    """The study's one backbone reading its weights from the file `weights` (so none is
    pretrained here)."""
    if len(backbones) != 1:
        raise StudyInputError(f"weights: a weights file is for one backbone; the study has "
                              f"{len(backbones)} ({', '.join(b.tag for b in backbones)})")
    return {"backbones": (replace(backbones[0], weights=weights, hub_weights=False, obtain=""),),
            "upstream": None}


def _every_task_runs(spec: StudySpec) -> None:
    """Each task has a split for at least one of the study's train sizes (an imported task
    has those it was imported with), so that none is left out without a word."""
    for task in spec.tasks:
        if not any(supports(get_task(task), setting) for setting in spec.settings):
            raise StudyInputError(
                f"study '{spec.name}': task '{task}' has no split for train size "
                f"{', '.join(spec.settings)}; its splits: {', '.join(get_task(task).splits)} "
                f"(an imported task's train size is its --train-size)")


def _typed(spec: StudySpec, key: str, value: Any) -> Any:
    """A knob's value as its type (the file's 8 and the command line's "8" alike)."""
    knob = spec._knobs_named(key, spec.strategies)[0]
    return tuple(knob.parse(v) for v in value) if isinstance(value, tuple) else knob.parse(value)


def scheduler(*layers: Overrides) -> str:
    """The tune stage's scheduler: the last layer's that sets one, else grid."""
    return next((layer.values["scheduler"] for layer in reversed(layers)
                 if "scheduler" in layer.values), "grid")


def resolve(study: str, flags: Mapping[str, Any], smoke: bool = False,
            **base_changes) -> tuple[StudySpec, str]:
    """The study a command line names (a registered name or a .toml file) with its flags
    applied: (spec, scheduler)."""
    layers = []
    if is_file(study):
        found = read_file(study)
        layers.append(found.overrides)
        try:
            spec = get_study(found.base, smoke=smoke, **base_changes)
        except UnknownName as error:
            raise StudyInputError(f"{found.overrides.where}: base: {error}") from None
    else:
        spec = get_study(study, smoke=smoke, **base_changes)
    layers.append(from_flags(flags))
    return compose(spec, *layers), scheduler(*layers)
