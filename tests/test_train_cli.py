"""fer-train / fer-eval as users run them: the run directory, the tables, and clear errors."""

from __future__ import annotations

import csv
import json
import logging
import math
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from fer_lightning.console import quiet_third_party
from fer_lightning.emotions import EMOTIONS
from fer_lightning.errors import ConfigError
from tests.helpers.cli import eval_set_args, evaluate, fer, raf_args, tensorboard_tags, train
from tests.helpers.layouts import CROSS_TEST, RAF_TEST, RAF_TRAIN, make_rafdb


def test_train_writes_the_run_directory_and_a_reading(rounds_run):
    run_dir, result = rounds_run
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml", "versions.yaml"):
        assert (run_dir / ".hydra" / name).is_file(), name
    versions = yaml.safe_load((run_dir / ".hydra" / "versions.yaml").read_text())
    assert versions["torch"] == torch.__version__.split("+")[0]
    assert {"pytorch-lightning", "timm", "albumentations", "hydra-core"} <= set(versions)
    record = json.loads((run_dir / "experiment.json").read_text())["settings"]
    assert record["pseudo_label.strategy.k"] == 2 and "paths.log_dir" not in record
    for name in ("labeled", "unlabeled", "val", "test"):
        assert (run_dir / "splits" / f"{name}.csv").is_file()
    ckpts = run_dir / "round_0" / "checkpoints"
    assert (ckpts / "best.ckpt").is_file() and (ckpts / "last.ckpt").is_file()
    assert (run_dir / "round_0" / "DONE").is_file()
    metrics = json.loads((run_dir / "round_0" / "metrics.json").read_text())
    assert 0.0 <= metrics["test/macro_f1"] <= 1.0
    assert metrics["best_checkpoint"] == str(ckpts / "best.ckpt")
    out = result.stdout
    assert "| happiness |" in out and "| round | macro-F1 | acc | surprise |" in out
    assert "Reading: the teacher (round 0, trained on " in out
    assert "Test F1 per emotion, teacher -> student: surprise " in out
    assert "Round 2 trained on " in out and "right by the pool's hidden labels" in out
    assert "Balance: the largest emotion is " in out
    assert f"tensorboard --logdir {run_dir}/tensorboard" in out


def test_tensorboard_tags_are_logged_and_finite(rounds_run):
    run_dir, _ = rounds_run
    tags = tensorboard_tags(run_dir)["round_0"]
    expected = ["train/loss", "val/loss", "val/acc", "val/macro_f1", "test/acc", "test/macro_f1"]
    expected += [f"{stage}/f1_{e}" for stage in ("val", "test") for e in EMOTIONS]
    for tag in expected:
        assert tag in tags, tag
        assert tags[tag] and all(math.isfinite(v) for v in tags[tag]), tag
    assert "test/confusion_matrix" in tags
    assert "_hparams_/session_start_info" in tags  # HPARAMS tab: config vs final metrics


def test_eval_reproduces_the_test_metrics(rounds_run, raf, cross_set, tmp_path):
    run_dir, _ = rounds_run
    metrics = json.loads((run_dir / "round_0" / "metrics.json").read_text())
    ckpt = run_dir / "round_0" / "checkpoints" / "best.ckpt"
    result = evaluate(ckpt, raf, tmp_path, *eval_set_args("cross", cross_set))
    expected = f"| all | {100 * metrics['test/acc']:.1f} | {100 * metrics['test/macro_f1']:.1f} |"
    assert expected in result.stdout
    cross = f"| all | {100 * metrics['test@cross/acc']:.1f} | "
    cross += f"{100 * metrics['test@cross/macro_f1']:.1f} |"
    assert f"eval set cross: {cross_set}" in result.stdout and cross in result.stdout
    assert (
        "no test@cross face of disgust, so no F1; macro-F1 averages the emotions the split "
        "holds\n" in result.stdout
    )


def test_every_round_is_tested_on_the_eval_sets_too(rounds_run, tmp_path):
    """Cross-dataset sets: test@<name>/... per round in metrics.json, rounds.csv, TensorBoard
    and fer-report; an emotion the set lacks is left out of its macro-F1, and named."""
    run_dir, _ = rounds_run
    rows = list(csv.DictReader((run_dir / "rounds.csv").open()))
    tags = tensorboard_tags(run_dir)
    for k, row in enumerate(rows):
        metrics = json.loads((run_dir / f"round_{k}" / "metrics.json").read_text())
        assert metrics["test@cross/absent"] == "disgust"
        held = [metrics[f"test@cross/f1_{e}"] for e in EMOTIONS if e != "disgust"]
        assert metrics["test@cross/macro_f1"] == pytest.approx(sum(held) / len(held))
        assert metrics["test@cross/support_happiness"] == CROSS_TEST[EMOTIONS.index("happiness")]
        assert float(row["test@cross/macro_f1"]) == pytest.approx(metrics["test@cross/macro_f1"])
        assert row["test@cross/f1_disgust"] == "nan" and row["test@cross/f1_fear"] != "nan"
        # the round's own test values are not overwritten by the eval set's test
        logged = tags[f"round_{k}"]  # (the HPARAMS tab logs the final values once more)
        for key in ("test@cross/macro_f1", "test/macro_f1"):
            assert logged[key] and all(v == pytest.approx(metrics[key]) for v in logged[key])
    report = fer("report", [str(run_dir), "--out", str(tmp_path)]).stdout
    assert "Cross-dataset test sets (macro-F1 %, over the emotions each set holds):" in report
    assert "| run | cross teacher | cross final |" in report
    columns = next(csv.reader((tmp_path / "report.csv").open()))
    assert {"teacher_test@cross/macro_f1", "final_test@cross/macro_f1"} <= set(columns)


def test_an_eval_set_with_a_wrong_split_stops_the_run_before_training(raf, cross_set, tmp_path):
    args = [*eval_set_args("cross", cross_set), "eval_sets.cross.test_split=nope"]
    result = train(tmp_path, *raf_args(raf), *args, check=False)
    assert result.returncode == 2, result.output
    assert f"eval_sets.cross: split 'nope' not found in {cross_set}; found: test" in result.stderr
    assert "eval_sets.cross.test_split" in result.stderr
    assert not (tmp_path / "run" / "round_0" / "checkpoints").exists()


def test_console_filters_only_the_named_third_party_noise(caplog):
    quiet_third_party()
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.utilities.rank_zero"):
        log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
        log.info("💡 Tip: For seamless cloud logging, try installing [litlogger](...)")
        # Lightning 2.6's tip in every fer-eval / fer-train (callback_connector.py, rank_zero_info)
        log.info("💡 Tip: For seamless cloud uploads and versioning, try installing "
                 "[litmodels](https://pypi.org/project/litmodels/) to enable ...")  # fmt: skip
        log.info("GPU available: False, used: False")
        log.info("`Trainer.fit` stopped: `max_epochs=1` reached.")
        log.info("Restoring states from the checkpoint path at /x/best.ckpt")
        log.info("something Lightning has not said before")
    assert "litlogger" not in caplog.text and "litmodels" not in caplog.text
    assert "something Lightning" in caplog.text
    for chatter in ("GPU available", "Trainer.fit", "Restoring states"):
        assert chatter not in caplog.text, chatter  # hidden at the default level
    with caplog.at_level(logging.DEBUG, logger="pytorch_lightning.utilities.rank_zero"):
        log.info("GPU available: False, used: False")
    assert "GPU available" in caplog.text  # still there for whoever asks for DEBUG
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        quiet_third_party()
        from pytorch_lightning.utilities._pytree import _tree_flatten

        _tree_flatten(torch.zeros(1))
        warnings.warn("Checkpoint directory /r/checkpoints exists and is not empty.", stacklevel=1)
        warnings.warn("something new", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something new"]


# -- errors: the project's message, exit status 2, no traceback, nothing half-made -----


def _bad_label(root: Path) -> None:
    label_file = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    lines = label_file.read_text().splitlines()
    label_file.write_text("\n".join(["train_00001.jpg 9", *lines[1:]]) + "\n")


def _not_utf8(root: Path) -> None:
    label_file = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    label_file.write_bytes(
        label_file.read_bytes().replace(b"train_00002.jpg", b"train_\xe900002.jpg")
    )


def _duplicate_lines(root: Path) -> None:
    label_file = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    lines = label_file.read_text().splitlines()
    label_file.write_text("\n".join(lines + lines[:5]) + "\n")


CONFIG_ERRORS = {  # overrides -> phrase; found before any file of the run is written
    "image size": (["data.image_size=-5"], "data.image_size=-5: must be an integer in [16, 1024]"),
    "no epochs": (["trainer.max_epochs=0"], "trainer.max_epochs=0: must be an integer >= 1"),
    "weights file": (["model.weights={text}"], "not a PyTorch weights file"),
    "no offline file": (
        ["model=mobilenetv1", "model.weights=imagenet"],
        "no offline ImageNet file for backbone 'mobilenetv1_100'",
    ),
    "class_score typo": (
        ["pseudo_label=class_threshold", "pseudo_label.strategy.class_score=precison"],
        "pseudo_label.strategy: ClassThreshold: class_score must be one of precision",
    ),
    "class_score unused": (
        ["pseudo_label=threshold", "+pseudo_label.strategy.class_score=confidence"],
        "pseudo_label.strategy: Threshold does not take class_score (its options: threshold)",
    ),
    "student augment": (
        ["+pseudo_label.student_augment.colour=0.4"],
        "pseudo_label.student_augment: unknown option(s) ['colour']",
    ),
    "unused option": (
        ["pseudo_label=threshold", "+pseudo_label.strategy.k=5"],
        "Threshold does not take k",
    ),
    "missing ckpt": (["ckpt_path={tmp}/nope.ckpt"], "nope.ckpt: file not found"),
    "no validation": (
        ["data.val_fraction=0"],
        "data.val_fraction=0: fer-train needs a validation split",
    ),
    "seed text": (["seed=abc"], "seed='abc': must be an integer in [0, 4294967295]"),
    "huge image": (
        ["data.image_size=100000"],
        "data.image_size=100000: must be an integer in [16, 1024]",
    ),
    "paper without a pool": (
        ["experiment=rafdb_paper", "trainer=cpu", "data.root={raf}"],
        "unlabeled_dir has no value and this configuration needs one (read by "
        "data.unlabeled_dir): add unlabeled_dir=PATH",
    ),
    "an online option on the supervised method": (
        ["+model.mu=2"],
        "model: unknown option(s) ['mu'] for FERClassifier; valid: backbone,",
    ),
    "class weights of another label space": (
        ["model.class_weights=[1,2]"],
        "model.class_weights=[1, 2]: must be 7 non-negative numbers, one per emotion",
    ),
    "top-k of nothing": (
        ["pseudo_label=topk", "pseudo_label.strategy.k=0"],
        "pseudo_label.strategy: TopK: k=0 selects no pseudo labels",
    ),
    "log dir under a file": (
        ["paths.log_dir={text}/logs"],
        "paths.log_dir={text}/logs: cannot write there: Not a directory",
    ),
    "run dir under a file": (
        ["hydra.run.dir={text}/run"],
        "hydra.run.dir={text}/run: cannot write there: Not a directory",
    ),
}
DATA_ERRORS = {  # a damaged data set -> phrase
    "label 9": (_bad_label, "list_patition_label.txt:1 (train_00001.jpg): label 9 is outside"),
    "not utf-8": (_not_utf8, "list_patition_label.txt:2: not UTF-8 text (byte 0xe9)"),
    "duplicates": (_duplicate_lines, "5 duplicate lines"),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_errors_name_the_key_before_anything_is_written(case, raf, tmp_path):
    overrides, phrase = CONFIG_ERRORS[case]
    text = tmp_path / "weights.txt"
    text.write_text("not weights\n")
    overrides = [o.format(text=text, tmp=tmp_path, raf=raf) for o in overrides]
    result = train(tmp_path, *raf_args(raf), *overrides, check=False)
    assert result.returncode == 2, result.output
    phrase = phrase.format(text=text)
    assert result.stderr.startswith("fer-train: error: ") and phrase in result.stderr
    assert "Traceback" not in result.output
    run_dir = tmp_path / "run"
    assert not (run_dir / ".hydra").exists() and not (run_dir / "experiment.json").exists()


@pytest.mark.parametrize("case", list(DATA_ERRORS))
def test_data_errors_name_file_and_line(case, tmp_path):
    damage, phrase = DATA_ERRORS[case]
    root = make_rafdb(tmp_path / "raf", RAF_TRAIN, RAF_TEST)
    damage(root)
    result = train(tmp_path, "data=rafdb", f"data.root={root}", check=False)
    assert result.returncode == 2 and phrase in result.stderr, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "round_0").exists()


def test_full_error_keeps_the_traceback(raf, tmp_path, monkeypatch):
    """HYDRA_FULL_ERROR=1: Hydra lets the exception through, traceback and all."""
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="trainer.max_epochs=0: must be an integer >= 1"):
        train(tmp_path, *raf_args(raf), "trainer.max_epochs=0", check=False)


def test_wrong_override_fails_with_hydras_message(tmp_path):
    result = train(tmp_path, "model=not_a_model", check=False)
    assert result.returncode != 0
    assert "Could not find 'model/not_a_model'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "round_0").exists()


@pytest.mark.parametrize(
    ("copy", "phrase"),
    [
        (("train_00001", "test_0001"), "evaluation would see training images"),
        (("train_00001", "train_00011"), "one face would carry two labels"),
    ],
)
def test_copied_images_are_found_by_content_and_named(copy, phrase, tmp_path):
    """A face saved again under another name is the same image, whatever its path."""
    root = make_rafdb(tmp_path / "raf", RAF_TRAIN, RAF_TEST)
    aligned = root / "basic" / "Image" / "aligned"
    source, copied = (aligned / f"{name}_aligned.jpg" for name in copy)
    copied.write_bytes(source.read_bytes())
    result = train(tmp_path, *raf_args(root), check=False)
    assert result.returncode == 2 and "Traceback" not in result.output, result.output
    assert "1 image is a copy of others (identical bytes)" in result.stderr
    assert phrase in result.stderr
    assert str(source) in result.stderr and str(copied) in result.stderr
    assert not (tmp_path / "run" / "round_0").exists()


def test_random_init_is_announced_once(raf, tmp_path):
    """model=mobilenetv1 has no offline ImageNet file: training says so, once, and how to fix."""
    result = train(tmp_path, *raf_args(raf), "model=mobilenetv1", "pseudo_label=none")
    assert result.output.count("NO PRETRAINED WEIGHTS: model.backbone=mobilenetv1_100") == 1
    assert "model.pretrained=true" in result.output and "model.weights=PATH" in result.output
    default = train(tmp_path / "v2", *raf_args(raf), "model=mobilenetv2", "pseudo_label=none")
    assert "NO PRETRAINED WEIGHTS" not in default.output


def test_a_run_stopped_by_its_data_is_redone_with_the_fix(raf, tmp_path):
    """The pool folder is the data set's image folder: the message says so (not "remove the
    repeats from the label files"), and the directory it never trained in is not claimed."""
    pool = raf / "basic" / "Image" / "aligned"
    result = train(tmp_path, *raf_args(raf), f"data.unlabeled_dir={pool}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.output
    assert "data.unlabeled_dir holds 83 of the data set's own images" in result.stderr
    assert "label files" not in result.stderr
    fixed = train(tmp_path, *raf_args(raf), "pseudo_label.rounds=0", check=False)
    assert fixed.returncode == 0, fixed.output
    assert "never trained (no round_0)" in fixed.output
    assert (tmp_path / "run" / "round_0" / "DONE").is_file()


def test_an_unreadable_rounds_csv_is_rewritten_not_a_traceback(tmp_path, caplog):
    """rounds.csv is a summary of the rounds' files: binary garbage there (read on resume)
    is rewritten with a warning."""
    from fer_lightning.run_dir import RunDir

    run = RunDir(tmp_path)
    run.rounds_csv.write_bytes(bytes(range(256)) * 4)
    with caplog.at_level(logging.WARNING, logger="fer_lightning"):
        assert run.read_rounds_csv() == []
    assert "rounds.csv is unreadable (UnicodeDecodeError): it is rewritten" in caplog.text


def test_hydra_flags_may_follow_the_overrides():
    """``fer-train a=1 b=2 -m`` as users type it: argparse wants the flag first."""
    from fer_lightning.cli.common import flags_first

    assert flags_first(["seed=1,2", "data=rafdb", "-m"]) == ["-m", "seed=1,2", "data=rafdb"]
    assert flags_first(["--config-dir", "my_conf", "a=1"]) == ["--config-dir", "my_conf", "a=1"]
