"""The "regions" output: apex faces from the loader, cached points, mosaics of maps and clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from builders import APEX_FOLDER, FLOW_MAPS, build_megc2019_flow, write_face_image, write_image
from flowdata import CentroidEngine, write_flow_dataset
from merkit.data.registry import load_dataset
from merkit.errors import ConfigError, DataLayoutError
from merkit.preprocess import landmarks
from merkit.preprocess.cache import sample_key
from merkit.preprocess.flowmaps import read_flow_map
from merkit.preprocess.landmarks import image_points
from merkit.preprocess.pipeline import PrepareConfig, prepare
from merkit.preprocess.published import POINTS_FOLDER
from merkit.preprocess.regions import REGION_LAYOUTS, fallback_points, region_mosaic, rescale_points
from merkit.training.config import ExperimentConfig
from merkit.training.leakage_audit import run_audit
from merkit.training.runner import run_experiment
from preprocess_clips import face_clip


def _regions(samples, tmp_path: Path | None = None, **config):
    config = PrepareConfig(output="regions", **config)
    return prepare(samples, config, cache_dir=tmp_path, workers=1, progress=False)


def test_loader_records_the_apex_faces_beside_the_maps(tmp_path: Path) -> None:
    build_megc2019_flow(tmp_path, apex_faces=[0, 1, 2, 3, 4, 6, 7])
    write_image(tmp_path / APEX_FOLDER / "unrelated.png")  # a png in apex/ is not a map folder
    data = load_dataset("megc2019-flow", tmp_path)
    faces = {s.uid: s.meta.get("apex_face") for s in data}
    assert faces["samm/006/006_1_2"] == str(tmp_path / APEX_FOLDER / "006_006_1_2.jpg")
    assert faces["smic/s01/s01_ne_01"] is None  # row 5 has no face
    assert data.notes == [f"1 sample(s) have no apex face in {tmp_path / APEX_FOLDER}"]
    elsewhere = load_dataset("megc2019-flow", tmp_path, apex=tmp_path / APEX_FOLDER)
    assert [s.meta.get("apex_face") for s in elsewhere] == list(faces.values())
    with pytest.raises(DataLayoutError, match="nowhere: apex-face folder does not exist"):
        load_dataset("megc2019-flow", tmp_path, apex=tmp_path / "nowhere")


def test_without_an_apex_folder_nothing_changes(tmp_path: Path) -> None:
    data = load_dataset("megc2019-flow", build_megc2019_flow(tmp_path))
    assert data.notes == [] and all("apex_face" not in s.meta for s in data)


def test_published_maps_become_mosaics_around_their_faces_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build_megc2019_flow(tmp_path / "data", apex_faces=[0, 1, 2, 3, 4, 6, 7])
    samples = load_dataset("megc2019-flow", root).samples
    cache = tmp_path / "cache"
    prepared = _regions(samples, cache)
    assert prepared.x.shape == (7, 3, 28, 28) and prepared.x.dtype == np.float32
    (faceless,) = [s for s in samples if "apex_face" not in s.meta]
    assert prepared.failed == [
        (
            "smic/s01/s01_ne_01",
            f"{faceless.path}: no apex face image for smic/s01/s01_ne_01; a 'regions' output "
            "needs one (e.g. ROOT/apex/s01_s01_ne_01.jpg)",
        )
    ]
    counts = prepared.landmark_counts()
    assert sum(counts.values()) == 7 and set(counts) == {"detected", "face-box", "fallback"}
    sample = prepared.samples[2]
    points, _, size = image_points(Path(sample.meta["apex_face"]))
    expected = region_mosaic(
        read_flow_map(sample), rescale_points(points, size, 28), REGION_LAYOUTS["htnet"]
    )
    np.testing.assert_array_equal(prepared.x[2], expected)
    assert len(list((cache / POINTS_FOLDER).rglob("*.npz"))) == 7  # points only, no mosaics
    assert len(list(cache.rglob("*.npz"))) == 7

    monkeypatch.setattr(landmarks, "find_points", None)  # a second run only reads points
    again = _regions(samples, cache)
    np.testing.assert_array_equal(again.x, prepared.x)
    assert again.landmarks == prepared.landmarks
    upright = _regions(samples, cache, regions="upright")
    assert not np.array_equal(upright.x, prepared.x)


def test_a_face_without_points_gets_htnets_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build_megc2019_flow(tmp_path, rows=[("smic", "s01", "s01_ne_01", 0)], apex_faces=[0])
    monkeypatch.setattr(landmarks, "find_points", lambda gray, config: (None, "fallback"))
    (sample,) = load_dataset("megc2019-flow", root).samples
    prepared = _regions([sample])
    assert prepared.landmark_counts() == {"detected": 0, "face-box": 0, "fallback": 1}
    expected = region_mosaic(read_flow_map(sample), fallback_points(28), REGION_LAYOUTS["htnet"])
    np.testing.assert_array_equal(prepared.x[0], expected)


def test_a_clip_gets_the_points_of_its_aligned_apex_face(tmp_path: Path) -> None:
    clip = face_clip(tmp_path / "EP01", count=5, apex=3)
    prepared = _regions([clip], tmp_path / "cache", flow="dis")
    assert prepared.x.shape == (1, 3, 28, 28) and prepared.landmarks == ["detected"]
    again = _regions([clip], tmp_path / "cache", flow="dis")
    assert again.cache_hits == 1 and again.landmarks == ["detected"]
    np.testing.assert_array_equal(again.x, prepared.x)


def test_the_layout_keys_only_region_outputs(tmp_path: Path) -> None:
    clip = face_clip(tmp_path / "EP01", count=3, apex=1)
    assert "regions" not in PrepareConfig().identity()
    assert PrepareConfig(output="regions", regions="upright").identity()["regions"] == "upright"
    flow = [PrepareConfig(regions=name) for name in REGION_LAYOUTS]
    assert sample_key(clip, flow[0]) == sample_key(clip, flow[1])
    regions = [PrepareConfig(output="regions", regions=name) for name in REGION_LAYOUTS]
    assert sample_key(clip, regions[0]) != sample_key(clip, regions[1])
    assert PrepareConfig(output="regions", regions="upright", size=56).item_shape == (3, 56, 56)
    with pytest.raises(ConfigError, match="unknown region layout"):
        PrepareConfig(output="regions", regions="eyes")


def test_the_flip_is_refused_where_it_does_not_mirror_the_mosaic() -> None:
    base = {"data": {"root": "x"}, "recipe": {"model": "cabm"}}
    with pytest.raises(ConfigError, match="'htnet' region mosaic, which does not mirror"):
        ExperimentConfig.from_dict({**base, "prepare": {"output": "regions"}})
    upright = {"output": "regions", "regions": "upright"}
    assert ExperimentConfig.from_dict({**base, "prepare": upright}).recipe.augment.hflip
    no_flip = {"model": "cabm", "augment": {"hflip": False}}
    ExperimentConfig.from_dict({**base, "recipe": no_flip, "prepare": {"output": "regions"}})


def test_a_run_records_how_its_points_were_found(tmp_path: Path) -> None:
    root = write_flow_dataset(tmp_path / "megc", per_subject=2, apex_faces=True)
    config = ExperimentConfig.from_dict({"data": {"root": str(root)}, "recipe": {"model": "htnet"}})
    run_experiment(config, tmp_path / "run", engine=CentroidEngine(), progress=False)
    meta = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    counts = meta["data"]["landmarks"]
    assert sum(counts.values()) == 12 and meta["config"]["prepare"]["output"] == "regions"
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"{counts['detected']} of 12 samples from a detected face" in report


def test_an_audit_records_how_its_points_were_found(tmp_path: Path) -> None:
    from test_audit_cli import EpochEngine

    root = write_flow_dataset(tmp_path / "megc", per_subject=2, apex_faces=True)
    recipe = {"model": "htnet", "epochs": 2}
    config = ExperimentConfig.from_dict({"data": {"root": str(root)}, "recipe": recipe})
    result = run_audit(config, tmp_path / "audit", k=2, engine=EpochEngine(), progress=False)
    counts = result["data"]["landmarks"]
    assert sum(counts.values()) == 12
    text = f"{counts['detected']} of 12 samples from a detected face"
    assert text in (tmp_path / "audit" / "audit.md").read_text()
    assert text in (tmp_path / "audit" / "audit.html").read_text(encoding="utf-8")


def test_maps_folder_ignores_the_apex_folder(tmp_path: Path) -> None:
    build_megc2019_flow(tmp_path)
    write_face_image(tmp_path / APEX_FOLDER / "sub02_EP01_11f.png", seed=0)
    data = load_dataset("megc2019-flow", tmp_path)
    assert data[0].path.parent == tmp_path / FLOW_MAPS
    assert data[0].meta["apex_face"].endswith("sub02_EP01_11f.png")
