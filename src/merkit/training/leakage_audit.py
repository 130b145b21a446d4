"""The leakage audit experiment: how much do the field's two common leaks inflate one recipe?

One recipe is trained three ways on the same prepared data and scored on pooled predictions:

- `loso`: leave-one-subject-out with a fixed schedule, last epoch (the honest figure);
- `oracle`: the SAME LOSO training, but each fold keeps the epoch that maximises accuracy on its
  own test subject (what most published MER code does): it peeks at the test subject;
- `kfold`: CABM-FMER's sample-level stratified k-fold, where a subject sits in train and test.

The inflation of a leaking figure is its difference from `loso`. Work is saved as it finishes
(LOSO per-epoch probabilities per fold, k-fold predictions per fold, each protocol's pooled
predictions), so rerunning the same audit into the same folder skips what is done.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from merkit.data.registry import load_dataset
from merkit.data.sample import Sample
from merkit.errors import ConfigError
from merkit.evaluation import html
from merkit.evaluation.audit import LeakageReport, leakage_audit
from merkit.evaluation.predictions import read_predictions, write_predictions
from merkit.evaluation.report import (
    SUMMARY_KEYS,
    headline_figures,
    landmark_text,
    markdown_table,
    read_probabilities,
    run_metrics,
)
from merkit.evaluation.splitters import (
    LeaveOneSubjectOut,
    SampleKFold,
    Splitter,
    SubjectLeakageWarning,
)
from merkit.io import read_yaml, write_atomic, write_json_atomic, write_text_atomic
from merkit.training.config import ExperimentConfig, config_differences, save_yaml
from merkit.training.runner import (
    DEFAULT_FOLDS_PER_CALL,
    FoldTask,
    RunProgress,
    fixed_chunks,
    fold_tasks,
    prediction_table,
    prepare_samples,
    training_input,
)

# fit_predict_epochs(recipe, x, y, folds, num_classes, seed, groups=None, progress=None)
#   -> per fold (epochs, n_test, K)
EpochEngine = Callable[..., list[np.ndarray]]

AUDIT_FILE = "audit.json"
AUDIT_MD = "audit.md"
AUDIT_HTML = "audit.html"
IDENTITY_FILE = "audit_config.yaml"
PROTOCOLS = ("loso", "oracle", "kfold")
LABELS = {
    "loso": "LOSO, fixed schedule, last epoch (honest)",
    "oracle": "LOSO, best epoch chosen on the test subject (LEAKS: oracle)",
    "kfold": "sample-level stratified k-fold, CABM-FMER protocol (LEAKS: subjects overlap)",
}
LEAKING = {"loso": False, "oracle": True, "kfold": True}


@dataclasses.dataclass
class AuditData:
    """The prepared data every protocol of the audit trains on."""

    samples: list[Sample]
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    class_names: list[str]
    meta: dict[str, Any]


# ---- preparation -----------------------------------------------------------------------------


def load_audit_data(config: ExperimentConfig, progress: bool) -> AuditData:
    """Load and prepare the dataset exactly as `run_experiment` does."""
    dataset = load_dataset(
        config.data.name, config.data.root, config.data.taxonomy, **config.data.options
    )
    prepared = prepare_samples(config, dataset, progress)
    samples = list(prepared.samples)
    meta = {
        "name": dataset.name,
        "root": str(dataset.root),
        "fingerprint": dataset.fingerprint(),
        "class_names": list(dataset.class_names),
        "n_used": len(samples),
        "n_subjects": len({s.subject_key for s in samples}),
        "failed": [{"sample": uid, "reason": reason} for uid, reason in prepared.failed],
    }
    if prepared.landmarks:
        meta["landmarks"] = prepared.landmark_counts()
    return AuditData(
        samples=samples,
        x=training_input(config, prepared.x),
        y=np.asarray([s.label for s in samples], dtype=np.int64),
        groups=np.asarray([s.subject_key for s in samples]),
        class_names=list(dataset.class_names),
        meta=meta,
    )


def _claim(out_dir: Path, identity: dict[str, Any], overwrite: bool) -> None:
    """Refuse to resume an audit folder that holds another audit (unless overwriting)."""
    path = out_dir / IDENTITY_FILE
    if path.is_file() and overwrite:
        for name in (*PROTOCOLS, "loso_epochs", "kfold_epochs"):
            shutil.rmtree(out_dir / name, ignore_errors=True)
    elif path.is_file():
        diffs = config_differences(read_yaml(path), identity)
        if diffs:
            raise ConfigError(
                f"{out_dir} holds an audit with other settings ({', '.join(diffs[:5])} differ); "
                "pass --overwrite or choose another output folder"
            )
    elif out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(
            f"{out_dir} exists and is not a merkit audit folder; choose another output folder "
            "or pass --overwrite to write into it"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(path, identity)


# ---- predictions -----------------------------------------------------------------------------


def _pooled_path(out_dir: Path, protocol: str) -> Path:
    return out_dir / protocol / "predictions.csv"


def _load_pooled(path: Path, data: AuditData) -> np.ndarray | None:
    """A finished protocol's pooled probabilities, or None when missing or for other samples."""
    if not path.is_file():
        return None
    table = read_predictions(path)
    expected = [(s.dataset, s.subject, s.clip) for s in data.samples]
    if list(zip(table.dataset, table.subject, table.sample, strict=True)) != expected:
        return None
    return read_probabilities(path, data.class_names)


def _save_pooled(path: Path, probs: np.ndarray, data: AuditData) -> None:
    write_predictions(
        path, prediction_table(data.samples, probs, data.class_names), probs, data.class_names
    )


def oracle_epoch(curve: np.ndarray, y_test: np.ndarray) -> int:
    """The epoch whose test accuracy is highest (first on ties): the peeking choice."""
    accuracy = (curve.argmax(axis=-1) == y_test[None, :]).mean(axis=1)
    return int(np.argmax(accuracy))


# ---- training --------------------------------------------------------------------------------


def _train_folds(
    engine: EpochEngine,
    config: ExperimentConfig,
    data: AuditData,
    tasks: Sequence[FoldTask],
    bar: RunProgress,
) -> dict[str, np.ndarray]:
    """Per fold name its (epochs, n_test, K) curve, loading saved folds and saving new ones."""
    curves: dict[str, np.ndarray] = {}
    slots: list[FoldTask | None] = []
    for task in tasks:
        curve = _load_curve(task.path, len(task.test), len(data.class_names))
        if curve is None:
            slots.append(task)
        else:
            curves[task.name] = curve
            slots.append(None)
    bar.folds_done(len(curves))
    per_call = config.recipe.folds_per_batch or DEFAULT_FOLDS_PER_CALL
    for chunk in fixed_chunks(slots, per_call):
        results = engine(
            config.recipe,
            data.x,
            data.y,
            [(t.train, t.test) for t in chunk],
            len(data.class_names),
            chunk[0].seed,
            groups=data.groups,
            progress=bar.epoch,
        )
        for task, curve in zip(chunk, results, strict=True):
            curve = np.asarray(curve, dtype=np.float32)
            _save_curve(task.path, curve)
            curves[task.name] = curve
        bar.folds_done(len(chunk))
    return curves


def _load_curve(path: Path, n_test: int, k: int) -> np.ndarray | None:
    """A saved fold's curve, or None (trained again) when missing, unreadable or misshapen."""
    if not path.is_file():
        return None
    try:
        curve = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return curve if curve.ndim == 3 and curve.shape[1:] == (n_test, k) else None


def _save_curve(path: Path, curve: np.ndarray) -> None:
    write_atomic(path, lambda handle: np.save(handle, curve), binary=True)


def _curve_tasks(data: AuditData, splitter: Splitter, seed: int, folder: Path) -> list[FoldTask]:
    """Fold tasks whose saved file is `{folder}/{fold}.npy` (one curve per fold)."""
    tasks = fold_tasks(data.samples, splitter, seed, folder)
    return [dataclasses.replace(t, path=folder / f"{t.name}.npy") for t in tasks]


# ---- the audit -------------------------------------------------------------------------------


def _default_engine() -> EpochEngine:
    from merkit.training.engine import fit_predict_epochs  # torch loads only when training

    return fit_predict_epochs


def run_audit(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    k: int = 10,
    engine: EpochEngine | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the three protocols of the audit into `out_dir`; write and return audit.json's content.

    The recipe's validation-subject selection is switched off: every figure uses the fixed
    schedule, so the only difference between `loso` and `oracle` is who picks the epoch.
    """
    engine = engine or _default_engine()
    out_dir = Path(out_dir)
    recipe = dataclasses.replace(config.recipe, val_subjects=0)
    config = dataclasses.replace(config, recipe=recipe, extra_recipes=[])
    seed = config.seeds[0]
    data = load_audit_data(config, progress)
    identity = {
        "recipe": recipe.to_dict(),
        "prepare": config.to_dict()["prepare"],
        "data": config.data.name,
        "fingerprint": data.meta["fingerprint"],
        "k": k,
        "seed": seed,
    }
    _claim(out_dir, identity, overwrite)
    loso, kfold = LeaveOneSubjectOut(), SampleKFold(n_splits=k, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SubjectLeakageWarning)  # the CLI says it once
        kfold_audit = leakage_audit(data.samples, kfold)
        probs = _protocol_probabilities(engine, config, data, loso, kfold, seed, out_dir, progress)
    result = _result(config, data, probs, kfold_audit, k)
    write_json_atomic(out_dir / AUDIT_FILE, result)
    write_text_atomic(out_dir / AUDIT_MD, render_audit_markdown(result))
    write_text_atomic(out_dir / AUDIT_HTML, render_audit_html(result))
    return result


def _protocol_probabilities(
    engine: EpochEngine,
    config: ExperimentConfig,
    data: AuditData,
    loso: Splitter,
    kfold: Splitter,
    seed: int,
    out_dir: Path,
    progress: bool,
) -> dict[str, Any]:
    """Pooled probabilities of each protocol (and the oracle's chosen epochs)."""
    pooled = {p: _load_pooled(_pooled_path(out_dir, p), data) for p in PROTOCOLS}
    epochs_path = out_dir / "oracle" / "epochs.json"
    need_loso = any(pooled[p] is None for p in ("loso", "oracle")) or not epochs_path.is_file()
    loso_tasks = _curve_tasks(data, loso, seed, out_dir / "loso_epochs") if need_loso else []
    kfold_tasks = _curve_tasks(data, kfold, seed, out_dir / "kfold_epochs")
    kfold_tasks = kfold_tasks if pooled["kfold"] is None else []
    n = len(data.samples), len(data.class_names)
    with RunProgress(progress, len(loso_tasks) + len(kfold_tasks)).running() as bar:
        if loso_tasks:
            curves = _train_folds(engine, config, data, loso_tasks, bar)
            last, best = np.zeros(n), np.zeros(n)
            chosen = {}
            for task in loso_tasks:
                curve = curves[task.name]
                chosen[task.name] = oracle_epoch(curve, data.y[task.test]) + 1
                last[task.test], best[task.test] = curve[-1], curve[chosen[task.name] - 1]
            _save_pooled(_pooled_path(out_dir, "loso"), last, data)
            _save_pooled(_pooled_path(out_dir, "oracle"), best, data)
            write_json_atomic(epochs_path, chosen)
            pooled["loso"], pooled["oracle"] = last, best
        if kfold_tasks:
            curves = _train_folds(engine, config, data, kfold_tasks, bar)
            probs = np.zeros(n)
            for task in kfold_tasks:
                probs[task.test] = curves[task.name][-1]
            _save_pooled(_pooled_path(out_dir, "kfold"), probs, data)
            pooled["kfold"] = probs
    return {**pooled, "oracle_epochs": json.loads(epochs_path.read_text(encoding="utf-8"))}


# ---- figures ---------------------------------------------------------------------------------


def inflation(leaking: dict[str, Any], honest: dict[str, Any]) -> dict[str, Any]:
    """Difference (leaking - honest) of each headline figure, overall and per dataset."""

    def diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
        return {key: a[key] - b[key] for key in SUMMARY_KEYS}

    return {
        "overall": diff(leaking["overall"], honest["overall"]),
        "per_dataset": {
            db: diff(m, honest["per_dataset"][db])
            for db, m in leaking["per_dataset"].items()
            if db in honest["per_dataset"]
        },
    }


def _leakage_section(report: LeakageReport) -> dict[str, Any]:
    return {
        "protocol": report.protocol,
        "summary": report.summary(),
        "n_leaking_folds": len(report.leaking_folds),
        "n_shared_subjects": len({s for f in report.leaking_folds for s in f.shared_subjects}),
        "folds": [
            {
                "fold": f.fold,
                "n_train": f.n_train,
                "n_test": f.n_test,
                "n_test_subjects": len(f.test_subjects),
                "n_shared_subjects": len(f.shared_subjects),
                "shared_subjects": list(f.shared_subjects),
            }
            for f in report.folds
        ],
    }


def _result(
    config: ExperimentConfig,
    data: AuditData,
    probs: dict[str, Any],
    kfold_audit: LeakageReport,
    k: int,
) -> dict[str, Any]:
    protocols = {}
    for name in PROTOCOLS:
        table = prediction_table(data.samples, probs[name], data.class_names)
        metrics = headline_figures(run_metrics(table, data.class_names))
        protocols[name] = {"label": LABELS[name], "leaking": LEAKING[name], **metrics}
    protocols["kfold"]["label"] = LABELS["kfold"].replace("k-fold", f"{k}-fold")
    epochs = list(probs["oracle_epochs"].values())
    protocols["oracle"]["chosen_epochs"] = probs["oracle_epochs"]
    protocols["oracle"]["mean_chosen_epoch"] = float(np.mean(epochs)) if epochs else 0.0
    return {
        "data": data.meta,
        "model": config.recipe.model,
        "recipe": config.recipe.to_dict(),
        "seed": config.seeds[0],
        "k": k,
        "protocols": protocols,
        "inflation": {p: inflation(protocols[p], protocols["loso"]) for p in ("oracle", "kfold")},
        "leakage": _leakage_section(kfold_audit),
    }


# ---- Markdown --------------------------------------------------------------------------------


def comparison_rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows: scope x protocol with UF1/UAR/accuracy and, for leaking ones, the inflation."""
    rows = []
    loso = result["protocols"]["loso"]
    scopes = ["overall", *loso["per_dataset"]]
    for scope in scopes:
        for name in PROTOCOLS:
            entry = result["protocols"][name]
            m = entry["overall"] if scope == "overall" else entry["per_dataset"].get(scope)
            if m is None:
                continue
            cells = []
            for key in ("uf1", "uar", "accuracy"):
                cell = f"{m[key]:.4f}"
                if name != "loso":
                    infl = result["inflation"][name]
                    d = infl["overall"] if scope == "overall" else infl["per_dataset"].get(scope)
                    cell += f" ({d[key]:+.4f})" if d else ""
                cells.append(cell)
            marker = " ⚠" if entry["leaking"] else ""
            rows.append([scope, f"{name}{marker}", str(m["n"]), *cells])
    return rows


COMPARISON_HEADER = ("scope", "protocol", "n", "UF1", "UAR", "accuracy")


def render_audit_markdown(result: dict[str, Any]) -> str:
    """audit.md: the three figures side by side with their inflation, and the overlap audit."""
    leak, recipe = result["leakage"], result["recipe"]
    lines = [
        f"# merkit leakage audit: {result['model']} on {result['data']['name']}",
        "",
        *[f"- **{key}**: {value}" for key, value in _audit_facts(result)],
        "",
        "## Protocols",
        "",
        *[
            f"- **{p}**{' ⚠' if e['leaking'] else ''}: {e['label']}"
            for p, e in result["protocols"].items()
        ],
        "",
        "## Figures (pooled predictions; in brackets the inflation vs LOSO)",
        "",
        *markdown_table(COMPARISON_HEADER, comparison_rows(result)),
        "",
        f"Oracle: mean chosen epoch {result['protocols']['oracle']['mean_chosen_epoch']:.1f} of "
        f"{recipe['epochs']} (chosen per fold on the test subject's own labels).",
        "",
        "## Subject overlap of the k-fold protocol",
        "",
        f"**Warning:** {leak['summary']}.",
        "",
        *markdown_table(OVERLAP_HEADER, _overlap_rows(leak)),
        "",
    ]
    return "\n".join(lines)


def _audit_facts(result: dict[str, Any]) -> list[tuple[str, str]]:
    data, recipe = result["data"], result["recipe"]
    landmarks = [("facial points", landmark_text(data["landmarks"]))] if "landmarks" in data else []
    return landmarks + [
        ("data", f"{data['name']} ({data['root']})"),
        ("samples", f"{data['n_used']} samples, {data['n_subjects']} subjects"),
        ("data fingerprint", data["fingerprint"]),
        (
            "recipe",
            f"{result['model']}, {recipe['epochs']} epochs, {recipe['optimizer']} lr "
            f"{recipe['lr']}, {recipe['schedule']} schedule, seed {result['seed']}",
        ),
    ]


def _overlap_rows(leak: dict[str, Any]) -> list[list[Any]]:
    return [
        [f["fold"], f["n_train"], f["n_test"], f["n_test_subjects"], f["n_shared_subjects"]]
        for f in leak["folds"]
    ]


OVERLAP_HEADER = ("fold", "train", "test", "test subjects", "also in train")


def render_audit_html(result: dict[str, Any]) -> str:
    """audit.html: audit.md's content as one self-contained page, leaking rows shaded."""
    rows = comparison_rows(result)
    leak, oracle = result["leakage"], result["protocols"]["oracle"]
    body = [
        html.definition_list(_audit_facts(result)),
        html.heading("Protocols"),
        html.bullet_list(
            [
                f"{p}{' ⚠' if e['leaking'] else ''}: {e['label']}"
                for p, e in result["protocols"].items()
            ]
        ),
        html.heading("Figures (pooled predictions; in brackets the inflation vs LOSO)"),
        html.table(COMPARISON_HEADER, rows, ["⚠" in row[1] for row in rows], text_columns=2),
        html.paragraph(
            f"Oracle: mean chosen epoch {oracle['mean_chosen_epoch']:.1f} of "
            f"{result['recipe']['epochs']}, chosen per fold on the test subject's own labels."
        ),
        html.heading("Subject overlap of the k-fold protocol"),
        html.paragraph(f"Warning: {leak['summary']}.", "warning"),
        html.table(OVERLAP_HEADER, _overlap_rows(leak)),
    ]
    return html.page(f"merkit leakage audit: {result['model']} on {result['data']['name']}", body)
