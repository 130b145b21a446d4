"""The run folder: who may write into it, what a resume finds there, what replacing removes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from merkit.errors import ConfigError
from merkit.evaluation.predictions import Predictions
from merkit.evaluation.run_folder import RunFolder
from merkit.evaluation.run_meta import DataInfo, RunInfo, RunMeta

CLASSES = ("negative", "positive", "surprise")
KEYS = [("casme2", "sub01", "EP01"), ("casme2", "sub01", "EP02")]
IDENTITY = {"recipe": {"model": "cabm", "epochs": 3}, "seeds": [0]}


def same(config: dict) -> dict:
    return config  # the recorded config is its identity here


def claim(folder: RunFolder, identity: dict = IDENTITY, fingerprint: str = "abc", **kw):
    options = {"resume": True, "overwrite": False, **kw}
    return folder.claim(identity, fingerprint, same, **options)


def started(folder: RunFolder) -> RunMeta:
    meta = RunMeta(
        config=IDENTITY,
        run=RunInfo(name=folder.path.name, started_at="t0"),
        data=DataInfo(name="megc2019-flow", fingerprint="abc", class_names=list(CLASSES)),
    )
    folder.write_meta(meta)
    return meta


def fold_table(probs: np.ndarray) -> Predictions:
    return Predictions.from_probabilities(KEYS, ["negative", "surprise"], probs, CLASSES)


def test_a_new_or_empty_folder_is_claimed_without_a_previous_run(tmp_path: Path) -> None:
    assert claim(RunFolder(tmp_path / "new")) is None
    (tmp_path / "empty").mkdir()
    assert claim(RunFolder(tmp_path / "empty")) is None


def test_the_same_config_resumes_with_the_earlier_run_and_its_finished_folds(
    tmp_path: Path,
) -> None:
    folder = RunFolder(tmp_path / "run")
    meta = started(folder)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    folder.save_fold(0, "casme2_sub01", fold_table(probs), {"train_loss": [1.0, 0.5]})

    previous = claim(folder)
    assert previous == meta and previous.run.started_at == "t0"
    loaded, curves = folder.load_fold(0, "casme2_sub01", KEYS, CLASSES)
    np.testing.assert_allclose(loaded, probs, atol=1e-6)
    assert curves == {"train_loss": [1.0, 0.5]}
    assert folder.load_fold(0, "casme2_sub01", KEYS[::-1], CLASSES) is None  # other samples
    assert folder.load_fold(1, "casme2_sub01", KEYS, CLASSES) is None  # another seed's


def test_a_fold_cut_short_by_a_crash_is_a_fold_to_run(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    path = folder.fold_file(0, "casme2_sub01")
    path.parent.mkdir(parents=True)
    path.write_text("dataset,subject,sample,true,predicted,p_negative\ncasme2,sub01,EP0")
    assert folder.load_fold(0, "casme2_sub01", KEYS, CLASSES) is None


def test_another_config_or_other_data_is_refused(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    started(folder)
    other = {"recipe": {"model": "cabm", "epochs": 4}, "seeds": [0]}
    with pytest.raises(ConfigError, match=r"different config \(recipe\.epochs differ"):
        claim(folder, other)
    with pytest.raises(ConfigError, match=r"data \(fingerprint of the samples\) differ"):
        claim(folder, fingerprint="xyz")


def test_overwrite_removes_only_what_a_run_wrote(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    started(folder)
    folder.save_fold(0, "casme2_sub01", fold_table(np.full((2, 3), 1 / 3)), {})
    pooled = fold_table(np.full((2, 3), 1 / 3))
    folder.write_predictions(pooled, {0: pooled, 1: pooled})
    (folder / "notes.txt").write_text("mine")

    assert claim(folder, {"other": True}, overwrite=True) is None
    assert sorted(p.name for p in folder.path.iterdir()) == ["notes.txt"]


def test_a_folder_of_other_files_is_refused_unless_overwriting(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "mine")
    folder.path.mkdir()
    (folder / "thesis.tex").write_text("mine")
    with pytest.raises(ConfigError, match="not a merkit run folder"):
        claim(folder)
    assert claim(folder, overwrite=True) is None
    assert (folder / "thesis.tex").read_text() == "mine"


def test_an_unreadable_recorded_config_names_the_file(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    started(folder)

    def unreadable(config: dict) -> dict:
        raise ConfigError("unknown key 'recipee'")

    with pytest.raises(ConfigError, match=r"config\.yaml holds a config this merkit cannot read"):
        folder.claim(IDENTITY, "abc", unreadable, resume=True, overwrite=False)


def test_the_pooled_predictions_are_read_once_with_their_probabilities(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    with pytest.raises(ConfigError, match="has not finished"):
        folder.read_predictions()
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    folder.write_predictions(fold_table(probs), {0: fold_table(probs)})
    pooled, seeds = folder.read_predictions()
    assert pooled.predicted == ["negative", "surprise"] and seeds == {}  # one seed: no files
    np.testing.assert_allclose(pooled.probabilities_for(CLASSES), probs, atol=1e-6)
    np.testing.assert_allclose(pooled.probabilities_for(CLASSES[::-1]), probs[:, ::-1], atol=1e-6)
