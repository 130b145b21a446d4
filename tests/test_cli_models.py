"""`merkit models` and the profiling API behind it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cli_helpers import run, widen_consoles
from merkit.models import profile
from merkit.models.profile import count_flops, default_cache_path, profile_models


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)
    torch.set_num_threads(1)


def test_flops_of_a_linear_layer() -> None:
    assert count_flops(torch.nn.Linear(10, 4), torch.zeros(1, 10)) == 2 * 10 * 4


def test_models_lists_every_model_without_timing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(["models", "--no-timing", "--json", str(tmp_path / "m.json")], capsys)
    assert code == 0
    for name in ("cabm", "convat", "c3dgru", "mol"):
        assert f" {name} " in out
    assert " 8x1x64x64 " in out and " 8x4x64x64 " in out and " 3x28x28 " in out
    rows = {r["name"]: r for r in json.loads((tmp_path / "m.json").read_text())}
    assert rows["mol"]["kind"] == "sequence" and rows["mol"]["train_ms"] is None
    assert rows["convat"]["params"] > 10_000 and rows["convat"]["mflops"] > 1
    assert rows["c3dgru"]["input"] == "8x1x64x64"


def test_models_kind_filter_and_bad_kind(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["models", "--no-timing", "--kind", "sequence"], capsys)
    assert code == 0 and " mol " in out and " c3dgru " in out and " convat " not in out
    code, _, err = run(["models", "--kind", "video"], capsys)
    assert code == 2 and "--kind 'video' must be one of" in err


def test_timings_are_cached_and_refreshed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "profile.json"
    first = profile_models(["convat"], cache_path=cache, batch_size=2)
    assert first[0].train_ms > 0 and first[0].infer_ms > 0
    stored = json.loads(cache.read_text())
    (key,) = stored
    assert key.startswith("convat|torch ") and stored[key]["train_ms"] == first[0].train_ms

    def no_timing(*_: object, **__: object) -> tuple[float, float]:
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(profile, "time_model", no_timing)
    again = profile_models(["convat"], cache_path=cache, batch_size=2)
    assert again[0].train_ms == first[0].train_ms

    monkeypatch.setattr(profile, "time_model", lambda *_, **__: (1.5, 0.5))
    fresh = profile_models(["convat"], cache_path=cache, batch_size=2, refresh=True)
    assert (fresh[0].train_ms, fresh[0].infer_ms) == (1.5, 0.5)
    assert json.loads(cache.read_text())[key]["train_ms"] == 1.5


def test_cli_uses_the_cache_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cache = tmp_path / "c.json"
    profile_models(["ststnet"], cache_path=cache, batch_size=8)
    key = next(iter(json.loads(cache.read_text())))
    data = json.loads(cache.read_text())
    data[key].update(train_ms=123.25, infer_ms=4.5)
    cache.write_text(json.dumps(data))
    code, out, _ = run(["models", "--kind", "flow", "--timing-cache", str(cache)], capsys)
    assert code == 0
    line = next(li for li in out.splitlines() if " ststnet " in li)
    assert "123.25" in line and "4.50" in line


def test_default_cache_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "merkit" / "model_profile.json"
