"""Final models, checkpoints and `Predictor`: round trips, timing, real and synthetic faces."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from experiments import experiment
from flowdata import write_flow_dataset
from inference_fixtures import (
    CLEAR,
    SMALL_CABM,
    make_meta,
    no_model,
    slow_predict,
    untrained_checkpoint,
)
from merkit.data.registry import load_dataset
from merkit.errors import ConfigError, DataLayoutError
from merkit.inference import Predictor, load_checkpoint, predictor
from merkit.inference.checkpoint import FORMAT, CheckpointMeta, save_checkpoint
from merkit.inference.picture import (
    CURVE_HEIGHT,
    CURVE_MARGIN,
    FONT,
    LABEL_SCALE,
    mark_labels,
    render_picture,
)
from merkit.inference.predictor import predict_many, read_input
from merkit.models import create_model
from merkit.models.blocks import SpatialAttention
from merkit.preprocess.pipeline import PrepareConfig, prepare
from merkit.preprocess.spotting import locate
from merkit.synthetic.dataset import (
    SyntheticConfig,
    generate_casme2_like,
    render_clip,
    write_synthetic_video,
)
from merkit.training.augment import hflip_flow
from merkit.training.engine import ProbabilityAverage
from merkit.training.fit import fit_final
from merkit.training.recipe import AugmentConfig, Recipe
from preprocess_clips import face_clip, face_image, write_frames

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_recipe(epochs: int = 2) -> Recipe:
    return Recipe(
        model="cabm",
        model_kwargs={"dim": 16, "depth": 2},
        epochs=epochs,
        batch_size=16,
        lr=3e-3,
        weight_decay=0.01,
        augment=AugmentConfig(max_shift=1),
    )


# --- checkpoints --------------------------------------------------------------------------------


def test_checkpoint_round_trip_is_weights_only_and_exact(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    net, meta = untrained_checkpoint(path)
    payload = torch.load(path, weights_only=True)  # no pickled code anywhere in the file
    assert payload["format"] == FORMAT and isinstance(payload["meta"], str)
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())

    loaded, loaded_meta = load_checkpoint(path)
    assert loaded_meta == meta
    assert loaded_meta.prepare_config == PrepareConfig(flow="dis")
    assert not loaded.training
    x = torch.rand(3, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_load_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="garbage.pt: not a readable merkit checkpoint"):
        load_checkpoint(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ConfigError, match="other.pt: not a merkit checkpoint"):
        load_checkpoint(other)
    with pytest.raises(DataLayoutError, match="missing.pt: model checkpoint does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    wrong = tmp_path / "wrong.pt"
    meta = make_meta()
    net, _ = untrained_checkpoint(tmp_path / "right.pt")
    save_checkpoint(wrong, net, dataclasses.replace(meta, model_kwargs={"dim": 32, "depth": 2}))
    with pytest.raises(ConfigError, match="wrong.pt: weights do not fit model 'cabm'"):
        load_checkpoint(wrong)


def test_fit_final_trains_on_every_sample_and_describes_itself(tmp_path: Path) -> None:
    root = write_flow_dataset(tmp_path / "megc")
    out = tmp_path / "final.pt"
    fitted = fit_final(experiment("megc2019-flow", root, tiny_recipe(), seed=3), out=out)
    meta = fitted.checkpoint.meta
    dataset = load_dataset("megc2019-flow", root)
    assert meta.n_samples == len(dataset) == 24
    assert meta.class_names == dataset.class_names == ("negative", "positive", "surprise")
    assert meta.data_fingerprint == dataset.fingerprint()
    assert meta.model == "cabm" and meta.model_kwargs == {"dim": 16, "depth": 2}
    assert meta.recipe["epochs"] == 2 and meta.recipe["val_subjects"] == 0 and meta.seed == 3
    assert meta.input_spec == {"kind": "maps", "channels": 3, "size": [28, 28], "frames": 1}
    assert meta.prepare_config == PrepareConfig()  # the published maps' TV-L1 preprocessing
    assert set(meta.versions) >= {"merkit", "torch", "numpy"} and meta.trained_at.startswith("20")

    net, loaded = load_checkpoint(out)
    assert loaded == meta
    x = torch.rand(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(net(x), fitted.checkpoint.model(x))


def test_ensemble_checkpoint_predicts_with_its_flip_averaging(tmp_path: Path) -> None:
    """An ensemble loads as an ensemble; a tta_flip recipe averages the map and its mirror."""
    meta = dataclasses.replace(
        make_meta(), seed_members=2, recipe={"tta_flip": True, "augment": {"u_scaling": "minmax"}}
    )
    torch.manual_seed(0)
    members = [create_model("cabm", 3, 3, **SMALL_CABM) for _ in range(2)]
    save_checkpoint(tmp_path / "ensemble.pt", ProbabilityAverage(members).eval(), meta)
    net, _ = load_checkpoint(tmp_path / "ensemble.pt")
    assert isinstance(net, ProbabilityAverage) and len(net.members) == 2

    x = torch.rand(1, 3, 28, 28)
    with torch.no_grad():
        plain = torch.stack([m(x).softmax(-1) for m in members]).mean(0)
        mirrored = torch.stack([m(hflip_flow(x)).softmax(-1) for m in members]).mean(0)
    probs = Predictor.load(tmp_path / "ensemble.pt").probabilities(x[0].numpy())
    np.testing.assert_allclose(probs, ((plain + mirrored) / 2)[0].numpy(), atol=1e-6)
    assert not np.allclose(probs, plain[0].numpy(), atol=1e-6)


def test_an_upright_region_checkpoint_predicts_with_its_flip_averaging(tmp_path: Path) -> None:
    """The `upright` mosaic mirrors with the face, so its tta_flip holds at prediction too."""
    config = PrepareConfig(output="regions", regions="upright")
    meta = dataclasses.replace(make_meta(config=config), recipe={"tta_flip": True})
    torch.manual_seed(0)
    model = create_model("cabm", 3, 3, **SMALL_CABM)
    save_checkpoint(tmp_path / "regions.pt", model.eval(), meta)
    x = torch.rand(1, 3, 28, 28)
    with torch.no_grad():
        expected = (model(x).softmax(-1) + model(hflip_flow(x)).softmax(-1)) / 2
    probs = Predictor.load(tmp_path / "regions.pt").probabilities(x[0].numpy())
    np.testing.assert_allclose(probs, expected[0].numpy(), atol=1e-6)


def test_meta_from_dict_names_missing_keys() -> None:
    data = make_meta().to_dict()
    del data["class_names"], data["prepare"]
    with pytest.raises(ConfigError, match="model.pt: metadata lacks class_names, prepare"):
        CheckpointMeta.from_dict(data, source="model.pt")


# --- timing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("emotion", "subject"), [("surprise", 21), ("disgust", 22)])
def test_spotting_times_an_expression_inside_neutral_frames(emotion: str, subject: int) -> None:
    frames, truth = render_clip(emotion, subject, 0, CLEAR, n_frames=100, onset=30, apex=45,
                                offset=70)  # fmt: skip
    timing = locate(frames, 200.0, window=40)
    assert abs(timing.onset - 30) <= 3 and abs(timing.apex - 45) <= 3
    assert abs(timing.offset - 70) <= 6
    assert timing.sources == {"onset": "spotted", "apex": "spotted", "offset": "spotted"}


def test_given_frames_are_used_and_checked() -> None:
    steady = dataclasses.replace(CLEAR, drift_px=0.0, illumination=0.0)
    frames, _ = render_clip("surprise", 1, 0, steady, n_frames=40, onset=10, apex=20, offset=30)
    given = locate(frames, 200.0, onset=10, apex=22, window=40)
    assert (given.onset, given.apex, given.offset) == (10, 22, 39)
    assert given.sources == {"onset": "given", "apex": "given", "offset": "clip-end"}
    partly = locate(frames, 200.0, onset=10, offset=30, window=40)
    assert abs(partly.apex - 20) <= 3 and partly.sources["apex"] == "spotted"
    with pytest.raises(ConfigError, match="apex frame was given without its onset"):
        locate(frames, 200.0, apex=20)
    with pytest.raises(ConfigError, match="onset <= apex <= offset"):
        locate(frames, 200.0, onset=20, apex=10)


def test_curve_labels_never_overlap_however_short_the_episode() -> None:
    """The picture's onset, apex and offset labels, for episodes of 0 to 6 frames anywhere in a
    100-frame clip, the ends included: inside the strip, and never on top of each other."""
    width, last = 384, 99

    def x_of(frame: int) -> int:
        return round(CURVE_MARGIN + frame / last * (width - 2 * CURVE_MARGIN))

    for onset in [*range(0, 94, 3), 93]:
        for length in range(7):
            marks = {"onset": onset, "apex": onset + length // 2, "offset": onset + length}
            labels = mark_labels([(k, f, x_of(f)) for k, f in marks.items()], width)
            boxes = []
            for text, left, row in labels:
                size = cv2.getTextSize(text, FONT, LABEL_SCALE, 1)[0][0]
                assert left >= 0 and left + size <= width, (text, left)
                boxes.append((row, left, left + size))
            assert [row for row, _, _ in boxes][1] == 0  # the apex's above the plot
            for i, (row, left, right) in enumerate(boxes):
                for other, start, end in boxes[i + 1 :]:
                    assert row != other or right < start or end < left, (marks, labels)


# --- Predictor ----------------------------------------------------------------------------------


def test_predict_runs_face_detection_on_a_real_face_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Astronaut frames (a photograph): detect + align on the first frame, spot the apex."""
    drawn: dict = {}

    def spy(face, flow, attention, caption, curve=None):  # what the picture is drawn from
        drawn.update(attention=attention, caption=caption, curve=curve)
        return render_picture(face, flow, attention, caption, curve)

    monkeypatch.setattr(predictor, "render_picture", spy)
    untrained_checkpoint(tmp_path / "model.pt")
    clip = face_clip(tmp_path / "astronaut", count=9, apex=5, peak=3.0, first=10)
    result = Predictor.load(tmp_path / "model.pt").predict(clip.path, picture_dir=tmp_path / "pics")

    left, top, right, bottom = result["face"]["box"]
    assert result["face"]["crop"] == "landmarks"
    assert 100 < left < 200 and 0 <= top < 100 and 250 < right < 350 and 180 < bottom < 300
    assert (result["onset"], result["apex"], result["offset"]) == (10, 15, 18)
    assert result["timing_sources"] == {"onset": "clip-start", "apex": "spotted",
                                        "offset": "clip-end"}  # fmt: skip
    probs = result["probabilities"]
    assert list(probs) == ["happiness", "surprise", "disgust"]
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert result["predicted"] == max(probs, key=probs.get)
    assert set(result["timings_ms"]) == {
        "read", "face", "spotting", "motion", "model", "picture", "total"
    }  # fmt: skip
    picture = cv2.imread(result["picture"]["path"])
    assert picture is not None and picture.shape == (384 + CURVE_HEIGHT, 384, 3)  # face, curve
    assert result["picture"]["attention"] == "spatial-attention"  # CABM's CBAM maps
    assert 0 < drawn["attention"].min() <= drawn["attention"].max() < 1  # weights as they are
    spotting = result["spotting"]
    assert spotting["method"] == "registered-difference" and spotting["eyes"] == "landmarks"
    assert "Lucas-Kanade" in spotting["follows"] and spotting["confidence"] > 0.8
    # The class's probability is said as such; the spotting's confidence as the spotting's.
    probability = f"{result['predicted']}, probability {result['confidence']:.2f}"
    assert drawn["caption"] == f"{probability}\napex frame 15"
    confidence = f"spotting confidence {spotting['confidence']:.2f}"
    assert drawn["curve"].title == f"motion (registered-difference); {confidence}"
    assert spotting["frames"] == list(range(10, 19)) and len(spotting["motion"]) == 9
    assert int(np.argmax(spotting["motion"])) == 5  # the curve peaks at the apex, frame 15


def test_predict_errors_name_the_input(tmp_path: Path) -> None:
    untrained_checkpoint(tmp_path / "m.pt")
    predictor = Predictor.load(tmp_path / "m.pt")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(DataLayoutError, match="broken.mp4: no video frames could be decoded"):
        predictor.predict(broken)
    blank = tmp_path / "blank"
    write_frames(blank, [np.full((96, 96), 128, np.uint8)] * 3, [1, 2, 3])
    with pytest.raises(DataLayoutError, match=r"blank \(frame 1\): no face found"):
        predictor.predict(blank)
    single = tmp_path / "single"
    write_frames(single, [face_image()], [7])
    with pytest.raises(DataLayoutError, match="single: 1 frame.*at least 2"):
        predictor.predict(single)
    with pytest.raises(DataLayoutError, match="nowhere.mp4: input does not exist"):
        predictor.predict(tmp_path / "nowhere.mp4")
    with pytest.raises(DataLayoutError, match="no frame numbered 99"):
        predictor.predict(blank, onset=99, apex=100, aligned=True)


def test_predict_spots_with_the_checkpoints_method_or_the_one_asked_for(tmp_path: Path) -> None:
    """The checkpoint's preprocessing names the spotting; `spotting=` overrides it; given onset
    and apex spot nothing, and the JSON says so."""
    untrained_checkpoint(tmp_path / "m.pt", config=PrepareConfig(flow="dis", spotting="flow"))
    folder = face_clip(tmp_path / "clip", count=9, apex=5, first=10).path
    predictor = Predictor.load(tmp_path / "m.pt")
    assert predictor.predict(folder, aligned=True)["spotting"]["method"] == "flow"
    asked = predictor.predict(folder, aligned=True, spotting="first-frame")
    assert asked["spotting"]["method"] == "first-frame" and asked["spotting"]["eyes"] == "none"
    assert asked["apex"] == 15
    assert (asked["spotting"]["fps"], asked["spotting"]["fps_assumed"]) == (200.0, True)
    rated = predictor.predict(folder, aligned=True, spotting="first-frame", fps=30.0)["spotting"]
    assert (rated["fps"], rated["fps_assumed"], rated["window"]) == (30.0, False, 6)  # 0.2 s
    given = predictor.predict(folder, onset=10, apex=15, aligned=True)["spotting"]
    assert given["method"] is None and given["confidence"] is None and given["motion"] == []
    with pytest.raises(ConfigError, match="unknown spotting method 'peak'"):
        predictor.predict(folder, aligned=True, spotting="peak")


def test_predict_refuses_a_missing_frame_where_prepare_does(tmp_path: Path) -> None:
    """Spotting and magnification read frames as a time series; onset->apex flow does not."""
    untrained_checkpoint(tmp_path / "m.pt")
    untrained_checkpoint(tmp_path / "magnify.pt", config=PrepareConfig(flow="dis", magnify=2.0))
    folder = face_clip(tmp_path / "gap", count=9, apex=5, first=10).path  # frames 10..18
    (folder / "img13.jpg").unlink()
    predictor = Predictor.load(tmp_path / "m.pt")
    with pytest.raises(DataLayoutError) as spotting:
        predictor.predict(folder, aligned=True)
    assert str(spotting.value) == (
        f"{folder}: frame(s) 13 missing between 10 and 18 of input/-/gap; "
        "spotting needs every frame"
    )
    assert predictor.predict(folder, onset=10, apex=15, aligned=True)["apex"] == 15
    with pytest.raises(DataLayoutError) as magnified:
        Predictor.load(tmp_path / "magnify.pt").predict(folder, onset=10, apex=15, aligned=True)
    assert str(magnified.value) == (
        f"{folder}: frame(s) 13 missing between 10 and 15 of input/-/gap; "
        "magnification needs every frame"
    )


def test_predict_refuses_a_face_too_small_for_the_crop_as_prepare_does(tmp_path: Path) -> None:
    untrained_checkpoint(tmp_path / "m.pt")  # crop_size 128
    small = cv2.resize(face_image(), (24, 24), interpolation=cv2.INTER_AREA)
    folder = tmp_path / "tiny"
    write_frames(folder, [small] * 3, [1, 2, 3])
    with pytest.raises(DataLayoutError) as refused:
        Predictor.load(tmp_path / "m.pt").predict(folder, aligned=True)
    message = str(refused.value)
    assert message == (
        f"{folder}: the face in frame 1 of input/-/tiny is about 24 px across, too small for the "
        "128 px face crop (more than 4x enlargement); use larger frames or a smaller crop_size"
    )
    sample = read_input(folder).sample  # the same clip through `prepare`: the same sentence
    prepared = prepare([sample], PrepareConfig(flow="dis", aligned=True), progress=False)
    assert prepared.failed == [(sample.uid, message)]


@pytest.mark.slow
def test_final_model_classifies_and_times_synthetic_videos(tmp_path: Path) -> None:
    """Train a small final model on synthetic clips; predict held-out subjects' mp4 videos."""
    config = dataclasses.replace(CLEAR, n_subjects=6, clips_per_subject=6, n_frames=20)
    root = generate_casme2_like(tmp_path / "synthetic", config)
    recipe = dataclasses.replace(tiny_recipe(60), augment=AugmentConfig())
    fit_final(experiment("casme2", root, recipe, PrepareConfig(flow="farneback")),
              out=tmp_path / "final.pt", progress=False)  # fmt: skip
    predictor = Predictor.load(tmp_path / "final.pt")
    video = dataclasses.replace(CLEAR, amplitude_px=(2.5, 3.0))
    for subject, emotion in enumerate(("happiness", "surprise", "disgust"), start=20):
        path = tmp_path / f"{emotion}.mp4"
        truth = write_synthetic_video(path, emotion, subject=subject, n_frames=100, onset=30,
                                      apex=45, offset=70, config=video)  # fmt: skip
        result = predictor.predict(path, aligned=True)
        assert result["predicted"] == emotion, result["probabilities"]
        assert abs(result["onset"] - truth["onset"]) <= 3
        assert abs(result["apex"] - truth["apex"]) <= 3
        assert result["fps"] == pytest.approx(SyntheticConfig().fps)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        ("c3dgru", {"widths": (4, 8), "pool_grid": 2, "hidden": 16}),
        ("icip24", {"frame_channels": 1, "size": 64, "filters": 4, "reduction": 2, "hidden": 8}),
        ("mol", {"crop": 56, "dim": 32, "flow_width": 0.0625}),
    ],
)
def test_sequence_models_fit_predict_and_export(model: str, kwargs: dict, tmp_path: Path) -> None:
    """Final models on frame sequences: the checkpoint holds the 4-D channels the model saw
    (MOL: packed targets), predict feeds a video through the same layout, ONNX agrees."""
    from merkit.inference import export_onnx

    config = dataclasses.replace(CLEAR, n_subjects=2, clips_per_subject=3, n_frames=20)
    root = generate_casme2_like(tmp_path / "synthetic", config)
    frames = 4 if model == "mol" else 6  # MOL's per-pair blocks make a long graph to export
    sequence = PrepareConfig(output="sequence", size=64, frames=frames, flow="farneback")
    recipe = Recipe(model=model, model_kwargs=kwargs, epochs=2, batch_size=4,
                    augment=AugmentConfig(hflip=False, max_shift=int(model != "mol")))  # fmt: skip
    checkpoint = fit_final(experiment("casme2", root, recipe, sequence),
                           out=tmp_path / "final.pt", progress=False).checkpoint  # fmt: skip
    assert checkpoint.meta.in_chans == frames * (4 if model == "mol" else 1)
    onnx_path = export_onnx(checkpoint.model, checkpoint.meta, tmp_path / "final.onnx")

    video = tmp_path / "clip.mp4"
    write_synthetic_video(video, "surprise", subject=9, n_frames=40, onset=10, apex=18,
                          offset=30, config=CLEAR)  # fmt: skip
    results = [
        Predictor.load(path).predict(video, aligned=True, picture_dir=tmp_path / path.suffix[1:])
        for path in (tmp_path / "final.pt", onnx_path)
    ]
    for result in results:
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        assert Path(result["picture"]["path"]).is_file()
    for name, p in results[0]["probabilities"].items():
        assert results[1]["probabilities"][name] == pytest.approx(p, abs=1e-4)
    model = load_checkpoint(tmp_path / "final.pt")[0]
    attends = any(isinstance(m, SpatialAttention) for m in model.modules())
    assert results[0]["picture"]["attention"] == ("spatial-attention" if attends else None)
    assert results[1]["picture"]["attention"] is None  # onnx: no maps


def test_ctrl_c_drops_the_videos_not_yet_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupted batch does not go on predicting every queued video before it exits."""
    monkeypatch.setenv("MERKIT_TEST_MARKS", str(tmp_path))
    monkeypatch.setattr(predictor.Predictor, "load", staticmethod(no_model))
    monkeypatch.setattr(predictor, "_init_worker", no_model)
    monkeypatch.setattr(predictor, "_worker_predict", slow_predict)
    videos = [tmp_path / f"clip{i:02d}.mp4" for i in range(60)]

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_many("model.pt", videos, workers=2, on_done=ctrl_c)
    # The pool has joined its workers; waiting for every queued video would leave 60 marks.
    assert len(list(tmp_path.glob("*.done"))) < len(videos) // 2
