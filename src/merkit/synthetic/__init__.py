"""The synthetic micro-expression generator, for the demo, the tests and the spotting benchmarks.

`faces` draws procedural faces, `population` says what each action unit moves and who the
subjects are, `clips` renders one clip and its truth, `truth` holds a clip's geometric truth
(true flow and landmarks), `dataset` writes clips in the real CASME II layout or as videos.
For spotting: `spec` says what happens in one hard clip, `scenarios` draws them in groups (lid
movements, blinks, drift, 30 fps, low amplitude, JPEG, face-filling frames), `photo` renders
them on a face photograph instead of a drawn face.
"""

from merkit.synthetic.clips import render_clip, render_clip_motion
from merkit.synthetic.dataset import (
    generate_casme2_like,
    with_true_apex,
    write_synthetic_video,
    write_video,
)
from merkit.synthetic.population import SyntheticConfig

__all__ = [
    "SyntheticConfig",
    "generate_casme2_like",
    "render_clip",
    "render_clip_motion",
    "with_true_apex",
    "write_synthetic_video",
    "write_video",
]
