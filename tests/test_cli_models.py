"""`merkit models`, the shipped model catalog behind it, and the timing API of `--timing`."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from cli_helpers import run, widen_consoles
from merkit.catalog import CATALOG_CLASSES, catalog_document, compute_catalog, read_catalog
from merkit.models import profile
from merkit.models.profile import count_flops, default_cache_path, time_models


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)
    torch.set_num_threads(1)


def test_flops_of_a_linear_layer() -> None:
    assert count_flops(torch.nn.Linear(10, 4), torch.zeros(1, 10)) == 2 * 10 * 4


def test_the_shipped_catalog_is_what_the_registry_gives_now() -> None:
    """catalog.json is a snapshot: a model added or changed without `make catalog` fails here."""
    shipped = json.loads(json.dumps(catalog_document(read_catalog())))
    assert shipped == json.loads(json.dumps(catalog_document(compute_catalog()))), (
        "src/merkit/catalog.json is out of date: run `make catalog`"
    )


def test_catalog_counts_parameters_at_three_classes() -> None:
    """The authors' ICIP 2024 network has 7,656,395 parameters at their 3-class input."""
    rows = {r.name: r for r in read_catalog()}
    assert CATALOG_CLASSES == 3
    assert rows["icip24"].params == 7_656_395 and rows["icip24"].input == "30x3x128x128"
    assert rows["hoof-svm"].params is None and rows["hoof-svm"].training == "closed-form"
    assert rows["recommended"].training == "average"
    assert rows["htnet"].presets == ("default", "paper")


def test_models_lists_every_model_from_the_catalog(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(["models", "--json", str(tmp_path / "m.json")], capsys)
    assert code == 0
    assert "parameters at 3 classes" in out
    for name in ("cabm", "convat", "c3dgru", "icip24", "mol", "htnet", "recommended"):
        assert f" {name} " in out
    assert " 8x1x64x64 " in out and " 8x4x144x144 " in out and " 3x28x28 " in out
    assert " 30x3x128x128 " in out  # the faithful models declare their authors' input
    assert "7,656,395" in out
    document = json.loads((tmp_path / "m.json").read_text())
    assert document["num_classes"] == 3
    rows = {r["name"]: r for r in document["models"]}
    assert rows["mol"]["kind"] == "sequence" and "train_ms" not in rows["mol"]
    assert rows["cabm"] == asdict(next(r for r in read_catalog() if r.name == "cabm")) | {
        "presets": ["default"]
    }


def test_models_starts_without_torch() -> None:
    """The table comes from the shipped catalog: torch is never imported for it."""
    probe = (
        "import sys\nfrom merkit.cli import main\n"
        "try:\n    main(['models'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_models_kind_filter_and_bad_kind(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["models", "--kind", "sequence"], capsys)
    assert code == 0 and " mol " in out and " c3dgru " in out and " convat " not in out
    code, out, _ = run(["models", "--kind", "regions"], capsys)
    assert code == 0 and " htnet " in out and " cabm " not in out
    code, _, err = run(["models", "--kind", "video"], capsys)
    assert code == 2 and "--kind 'video' must be one of" in err and "regions" in err


def test_closed_form_models_have_no_train_time(tmp_path: Path) -> None:
    """An SVM is fitted in one solve: no gradient step to time; its inference (the feature
    extraction) is timed like a network's."""
    (row,) = time_models(["hoof-svm"], cache_path=tmp_path / "p.json", batch_size=2)
    assert row.train_ms is None and row.infer_ms > 0 and row.device == "cpu"


def test_timings_are_cached_and_refreshed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "profile.json"
    first = time_models(["convat"], cache_path=cache, batch_size=2)
    assert first[0].train_ms > 0 and first[0].infer_ms > 0
    stored = json.loads(cache.read_text())
    (key,) = stored
    assert key.startswith("convat|torch ") and key.endswith("|cpu")
    assert stored[key]["train_ms"] == first[0].train_ms

    def no_timing(*_: object, **__: object) -> tuple[float, float]:
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(profile, "time_model", no_timing)
    again = time_models(["convat"], cache_path=cache, batch_size=2)
    assert again[0].train_ms == first[0].train_ms

    monkeypatch.setattr(profile, "time_model", lambda *_, **__: (1.5, 0.5))
    fresh = time_models(["convat"], cache_path=cache, batch_size=2, refresh=True)
    assert (fresh[0].train_ms, fresh[0].infer_ms) == (1.5, 0.5)
    assert json.loads(cache.read_text())[key]["train_ms"] == 1.5


def test_timing_option_uses_the_cache_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cache = tmp_path / "c.json"
    time_models(["ststnet"], cache_path=cache, batch_size=8)
    key = next(iter(json.loads(cache.read_text())))
    data = json.loads(cache.read_text())
    data[key].update(train_ms=123.25, infer_ms=4.5)
    cache.write_text(json.dumps(data))
    argv = ["models", "--kind", "maps", "--timing", "--timing-cache", str(cache)]
    code, out, _ = run(argv, capsys)
    assert code == 0
    line = next(li for li in out.splitlines() if " ststnet " in li)
    assert "123.25" in line and "4.50" in line


def test_default_cache_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "merkit" / "model_profile.json"
