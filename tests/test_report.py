from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from merkit.cli import main
from merkit.errors import AnnotationError, ConfigError
from merkit.evaluation.comparison import write_comparison
from merkit.evaluation.document import to_markdown
from merkit.evaluation.predictions import Predictions, read_predictions, write_predictions
from merkit.evaluation.report import render_run, run_document, run_metrics, seed_statistics
from merkit.evaluation.run_folder import RunFolder
from merkit.evaluation.run_meta import RunMeta

CLASSES = ["negative", "positive", "surprise"]


def table(
    true: list[str], predicted: list[str], probabilities: np.ndarray | None = None
) -> Predictions:
    n = len(true)
    return Predictions(
        dataset=["casme2"] * (n // 2) + ["samm"] * (n - n // 2),
        subject=[f"s{i % 3}" for i in range(n)],
        sample=[f"clip{i}" for i in range(n)],
        true=true,
        predicted=predicted,
        probabilities=probabilities,
        probability_classes=tuple(CLASSES) if probabilities is not None else (),
    )


TRUE = ["negative", "negative", "positive", "surprise", "negative", "positive"]
PRED = ["negative", "positive", "positive", "surprise", "negative", "negative"]
STARTED, FINISHED = "2025-05-01T12:00:00+00:00", "2025-05-01T14:03:27+02:00"


def test_run_metrics_values() -> None:
    metrics = run_metrics(table(TRUE, PRED), CLASSES)
    overall = metrics["overall"]
    assert overall["accuracy"] == pytest.approx(4 / 6)
    # negative: tp 2, fp 1, fn 1 -> f1 2/3; positive: tp 1, fp 1, fn 1 -> 1/2; surprise: 1
    assert overall["uf1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert overall["uar"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert overall["confusion"] == [[2, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert metrics["per_dataset"]["casme2"]["n"] == 3
    # keys are dataset/subject: casme2 = rows 0-2 (s0 right, s1 wrong), samm = rows 3-5
    assert metrics["per_subject"]["casme2/s0"] == {"n": 1, "correct": 1, "accuracy": 1.0}
    assert metrics["per_subject"]["casme2/s1"]["accuracy"] == 0.0
    assert metrics["per_subject"]["samm/s1"]["accuracy"] == 1.0
    assert "seeds" not in metrics


def test_seed_statistics_mean_and_sample_std() -> None:
    per_seed = {
        s: {
            "overall": {"uf1": v, "uar": v, "accuracy": v, "macro_precision": v, "n": 4},
            "per_dataset": {
                "casme2": {"uf1": v, "uar": v, "accuracy": v, "macro_precision": v, "n": 2}
            },
        }  # fmt: skip
        for s, v in ((0, 0.5), (1, 0.7), (2, 0.9))
    }
    stats = seed_statistics(per_seed)
    assert stats["n_seeds"] == 3
    assert stats["overall"]["uf1"]["mean"] == pytest.approx(0.7)
    assert stats["overall"]["uf1"]["std"] == pytest.approx(0.2)
    assert stats["per_dataset"]["casme2"]["uar"]["std"] == pytest.approx(0.2)


def write_run(
    run: Path,
    seeds: dict[int, list[str]] | None = None,
    leaking: bool = False,
    predicted: list[str] = PRED,
) -> None:
    meta = {
        "config": {
            "recipe": {
                "model": "cabm",
                "epochs": 3,
                "model_kwargs": {"dim": 32, "attention": False},
                "label_smoothing": 0.1,
                "class_weighted": True,
                "sam": 0.0,
                "augment": {"hflip": True, "max_shift": 2, "erase": 0.0},
            },
            "seeds": list(seeds or [0]),
        },
        "run": {"name": run.name, "started_at": STARTED, "finished_at": FINISHED},
        "data": {
            "name": "megc2019-flow",
            "class_names": CLASSES,
            "fingerprint": "abc123",
            "failed": [{"sample": "samm/006/x", "reason": "cannot decode"}],
        },  # fmt: skip
        "protocol": {
            "description": "kfold(k=2, seed=0)" if leaking else "loso",
            "subject_independent": not leaking,
            "n_folds": 2,
            "leakage": "kfold: 2 of 2 folds put 3 subjects in both train and test",
            "leaking_subjects": ["casme2/s0", "casme2/s1", "samm/s2"] if leaking else [],
        },
        "versions": {"python": "3.11", "merkit": "0.1.0"},
        "git_commit": None,
    }
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(meta))
    probs = np.full((len(TRUE), 3), 1 / 3)
    write_predictions(run / "predictions.csv", table(TRUE, predicted, probs))
    for seed, predicted in (seeds or {}).items():
        write_predictions(run / f"predictions_seed{seed}.csv", table(TRUE, predicted))


def test_render_run_writes_metrics_png_and_report(tmp_path: Path) -> None:
    run = tmp_path / "cabm-loso"
    write_run(run)
    metrics = render_run(run)
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert (run / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    report = (run / "report.md").read_text()
    assert report.startswith("# merkit run: cabm-loso\n\ncabm on megc2019-flow (3 classes), loso; ")
    assert "finished 2025-05-01 12:03 UTC." in report  # what, on which data, when: first
    assert "**started / finished**: 2025-05-01 12:00 UTC / 2025-05-01 12:03 UTC" in report
    assert "| overall | 6 | 0.7222 | 0.7222 | 0.6667 |" in report
    assert "| negative | 3 | 0.6667 | 0.6667 | 0.6667 |" in report
    assert "| samm/s1 | 1 | 1 | 1.0000 |" in report
    assert "data fingerprint**: abc123" in report and "is subject-independent" in report
    assert "samm/006/x: cannot decode" in report
    assert "mean ± std" not in report
    # what shaped the figures is in the report, switched-off options left out
    assert "**model settings**: dim 32\n" in report
    assert "**regularisation**: label smoothing 0.1, class-weighted loss\n" in report
    assert "**augmentation**: hflip, max_shift 2\n" in report


def test_render_run_multi_seed_and_leakage(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, seeds={0: PRED, 1: TRUE}, leaking=True)
    assert list(RunFolder(run).seed_files()) == [0, 1]
    metrics = render_run(run)
    assert metrics["seeds"]["1"]["overall"]["uf1"] == 1.0
    assert metrics["seed_statistics"]["overall"]["accuracy"]["mean"] == pytest.approx(5 / 6)
    report = (run / "report.md").read_text()
    assert "## Results over 2 seeds (mean ± std)" in report
    assert "| overall | 0.8611 ± 0.1964 |" in report
    assert "**Warning: subject leakage.**" in report
    assert "3 subjects appear in both train and test" in report and "samm/s2" in report


def test_render_markdown_needs_no_optional_metadata() -> None:
    metrics = run_metrics(table(TRUE, PRED), CLASSES)
    text = to_markdown(run_document(RunMeta.from_dict({"config": {}}), metrics, b""))
    assert "| overall | 6 |" in text and "git commit**: unknown" in text


def test_probabilities_read_back_from_a_predictions_file(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    write_predictions(path, table(TRUE, PRED))
    assert read_predictions(path).probabilities_for(CLASSES) is None
    probs = np.eye(3)[[0, 1, 1, 2, 0, 0]]
    write_predictions(path, table(TRUE, PRED, probs))
    assert np.array_equal(read_predictions(path).probabilities_for(CLASSES), probs)
    path.write_text(path.read_text().replace("1.000000", "x", 1))
    with pytest.raises(AnnotationError, match="not a number"):
        read_predictions(path)


def test_render_run_rejects_non_run_folder_and_unfinished_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a run folder"):
        render_run(tmp_path)
    write_run(tmp_path / "run")
    (tmp_path / "run" / "predictions.csv").unlink()
    with pytest.raises(ConfigError, match="has not finished"):
        render_run(tmp_path / "run")


def test_read_curves_json_csv_and_absent(tmp_path: Path) -> None:
    assert RunFolder(tmp_path).read_curves() is None
    (tmp_path / "curves.csv").write_text("epoch,train_loss,val_loss\n1,1.5,\n2,0.5,0.9\n")
    curves = RunFolder(tmp_path).read_curves()
    assert curves["train_loss"] == [1.5, 0.5]
    assert np.isnan(curves["val_loss"][0]) and curves["val_loss"][1] == 0.9
    (tmp_path / "curves.json").write_text('{"train_loss": [2.0, 1.0]}')  # json wins
    assert RunFolder(tmp_path).read_curves() == {"train_loss": [2.0, 1.0]}
    (tmp_path / "curves.json").write_text('{"train_loss": [2.0, "x"]}')
    with pytest.raises(AnnotationError, match="curves.json: a curve value is not a number"):
        RunFolder(tmp_path).read_curves()


def test_report_shows_training_curves_only_when_recorded(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run)
    render_run(run)
    assert "Training curves" not in (run / "report.md").read_text()
    assert not (run / "curves.png").exists()
    (run / "curves.json").write_text('{"train_loss": [1.0, 0.7, 0.5]}')
    render_run(run)
    assert "![training curves](curves.png)" in (run / "report.md").read_text()
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_training_curves_legend_covers_no_curve() -> None:
    from matplotlib import pyplot as plt

    from merkit.evaluation.figures import draw_curves

    curves = {
        "train_loss": [1.0, 0.6, 0.4],
        "val_loss": [1.1, 0.9, 0.8],
        "val_uf1": [0.3, 0.5, 0.6],
    }
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    try:
        draw_curves(fig, ax, curves, "training curves")
        fig.canvas.draw()
        (legend,) = fig.legends
        plot = ax.get_tightbbox()  # the plot with its ticks and axis labels
        assert legend.get_window_extent().y1 <= plot.y0  # below all of it
        assert [t.get_text() for t in legend.get_texts()] == list(curves)
    finally:
        plt.close(fig)


def test_comparison_of_runs_side_by_side(tmp_path: Path) -> None:
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", leaking=True)
    entries = write_comparison([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp")
    assert [e["leaking"] for e in entries] == [False, True]
    assert entries[0]["per_dataset"]["samm"]["n"] == 3
    assert (entries[0]["dataset"], entries[0]["date"]) == ("megc2019-flow", "2025-05-01 12:03 UTC")
    assert entries[0]["per_class"]["surprise"] == {"f1": 1.0, "recall": 1.0}
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| run | model | protocol | overall UF1 | overall UAR | overall acc | casme2 UF1 |" in md
    # casme2 rows 0-2: negative/negative, negative/positive, positive/positive -> acc 2/3; the
    # best of each column is the subject-independent run's, however the leaking one scores
    assert "| a | cabm | loso | **0.7222** | **0.7222** | **0.6667** |" in md
    assert "| b | cabm | kfold(k=2, seed=0) ⚠ leaks subjects | 0.7222 |" in md
    assert "inflated and not comparable" in md
    assert "Bold: the best of each column among the subject-independent runs." in md
    assert "- a: cabm on megc2019-flow, finished 2025-05-01 12:03 UTC (" in md
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text()) == entries


def test_comparison_per_class_marks_the_best_of_each_column(tmp_path: Path) -> None:
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", predicted=["negative", "negative", "surprise", "surprise",
                                         "negative", "positive"])  # fmt: skip
    write_comparison([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp")
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    f1 = md.split("## Per class: F1\n\n")[1].split("\n\n")[0].splitlines()
    assert f1[0] == "| run | negative | positive | surprise |"
    # a: negative 2/3 right, positive 1 of 2 (one false), surprise all; b: negative all,
    # positive 1 of 2 (no false), surprise one false: F1 per class, the higher marked (ties: both)
    assert f1[2:] == [
        "| a | 0.6667 | 0.5000 | **1.0000** |",
        "| b | **1.0000** | **0.6667** | 0.6667 |",
    ]
    recall = md.split("## Per class: recall\n\n")[1].split("\n\n")[0].splitlines()
    assert recall[2:] == [
        "| a | 0.6667 | **0.5000** | **1.0000** |",
        "| b | **1.0000** | **0.5000** | **1.0000** |",
    ]
    assert "among the subject-independent runs" not in md  # none leaks: all compared


def test_report_cli_one_run_and_several(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", leaking=True)
    main(["report", str(tmp_path / "a")])
    assert (tmp_path / "a" / "report.html").is_file()
    assert "report.html" in capsys.readouterr().out
    main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    assert "2 runs" in out and "leaks subjects" in out
    assert (tmp_path / "cmp" / "comparison.html").is_file()
