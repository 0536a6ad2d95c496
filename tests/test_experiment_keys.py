"""What makes two runs the same experiment: every key of the composed config, unless declared.

The walk covers each key the config groups hold today and any added later, without an edit
here: a key that is not declared runtime must change the run directory's record, and one not
declared as read after round 0 must change the teacher cache's key.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from fer_lightning.cli.common import CONFIG_DIR
from fer_lightning.experiment import (
    AFTER_TEACHER,
    BOOKKEEPING_KEYS,
    flatten,
    is_runtime,
    settings,
    teacher_settings,
    under,
)


def composed(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = "/runs/one"  # Hydra's runtime value, absent outside an app
    return cfg


def changed(value: Any) -> Any:
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return f"{value}_other"
    if isinstance(value, list):
        return [*value, 0]
    return 1  # None, an empty mapping


def with_value(cfg: DictConfig, key: str, value: Any) -> DictConfig:
    other = copy.deepcopy(cfg)
    with open_dict(other):
        OmegaConf.update(other, key, value, merge=False, force_add=True)
    return other


@pytest.mark.parametrize("group", ["balanced", "class_threshold"])
def test_every_key_not_declared_runtime_defines_the_experiment_and_the_teacher(group) -> None:
    cfg = composed(f"pseudo_label={group}", "data.root=/faces")
    record, teacher = settings(cfg), teacher_settings(cfg)
    leaves = flatten(OmegaConf.to_container(cfg, resolve=False))
    assert len(leaves) > 80  # the walk sees the whole config, not one group
    for key, value in leaves.items():
        other = with_value(cfg, key, changed(value))
        if is_runtime(key):
            assert settings(other) == record, f"{key} is runtime but changed the record"
            continue
        assert settings(other) != record, f"{key} does not change the experiment record"
        if under(key, AFTER_TEACHER) or under(key, BOOKKEEPING_KEYS):
            assert teacher_settings(other) == teacher, f"{key} changed the teacher key"
        else:
            assert teacher_settings(other) != teacher, f"{key} does not change the teacher key"


def test_a_new_group_is_part_of_the_teacher_key_without_an_edit() -> None:
    cfg = composed()
    other = with_value(cfg, "objective", {"_target_": "my.Loss", "gamma": 2.0})
    assert teacher_settings(other) != teacher_settings(cfg)
    assert settings(other) != settings(cfg)


def test_an_eval_set_is_part_of_the_experiment_but_not_where_its_files_go() -> None:
    cfg = composed("+data@eval_sets.cross=folder", "eval_sets.cross.root=/other", "data.root=/f")
    record, teacher = settings(cfg), teacher_settings(cfg)
    assert record["eval_sets.cross.root"] == "/other" == teacher["eval_sets.cross.root"]
    assert record["eval_sets.cross.test_split"] == "test"
    # its data preset's bookkeeping keys are runtime as data's own: no run dir in the key
    assert "eval_sets.cross.splits_dir" not in record and is_runtime("eval_sets.cross.num_workers")
