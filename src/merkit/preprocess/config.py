"""What preparation computes from each clip: `PrepareConfig`, and the kinds of array it makes.

Kept apart from the pipeline (and free of OpenCV) so that configs, the model registry and the
command line can name these choices without loading the image stack.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from merkit.errors import ConfigError
from merkit.preprocess.regions import region_layout

# What preparation makes and models take: u/v/strain maps, apex images, frame sequences, and
# u/v/strain maps cut into a mosaic of facial regions (merkit.preprocess.regions).
INPUT_KINDS = ("maps", "apex", "sequence", "regions")
# The kinds made of u/v/strain maps (read in gray, mirrored by the flow-aware flip).
MOTION_KINDS = ("maps", "regions")
# Earlier releases called the "maps" output "flow", a word that now only means optical flow (the
# algorithm, `flow`; the spotting method; the published flow-map dataset): read as "maps".
LEGACY_OUTPUTS = {"flow": "maps"}
FLOW_METHODS = ("tvl1", "farneback", "dis")
APEX_POLICIES = ("annotated", "spot")
# Apex spotting methods by name (defined in `merkit.preprocess.spotting`); the first is the default.
SPOTTING_METHODS = ("registered-difference", "flow", "feature-difference", "first-frame")
DEFAULT_SPOTTING = SPOTTING_METHODS[0]
ON_ERROR = ("skip", "stop")


@dataclass(frozen=True)
class PrepareConfig:
    """What to compute from each clip; its canonical JSON is part of every cache key."""

    # "maps" (3,S,S) u/v/strain | "apex" (C,S,S) | "sequence" (T,C,S,S) | "regions" (3,S',S')
    output: str = "maps"
    size: int = 28  # S: side of the output maps / images
    flow: str = "tvl1"  # tvl1 | farneback | dis
    raw_flow: bool = False  # maps in pixels/raw strain instead of per-channel 0..1
    aligned: bool = False  # frames are already aligned face crops (implied for reg_img* files)
    crop_size: int = 128  # side of the aligned face crop that flow and spotting run on
    margin: float = 0.1  # padding around the face box, as a fraction of its side
    magnify: float = 0.0  # Eulerian amplification alpha before flow; 0 = off
    magnify_band: tuple[float, float] = (0.05, 0.4)  # temporal band, cycles per frame
    apex_policy: str = "annotated"  # "annotated": spot only where unknown; "spot": always
    spotting: str = DEFAULT_SPOTTING  # how an apex is spotted (SPOTTING_METHODS)
    frames: int = 30  # T: frames of a "sequence", resampled evenly from onset to offset
    color: bool = False  # "apex"/"sequence" in RGB (C=3) instead of gray (C=1)
    regions: str = "htnet"  # layout of a "regions" mosaic (merkit.preprocess.regions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "output", LEGACY_OUTPUTS.get(self.output, self.output))
        region_layout(self.regions)  # ConfigError naming the known layouts
        checks = [
            (self.output in INPUT_KINDS, f"output {self.output!r} must be one of {INPUT_KINDS}"),
            (self.flow in FLOW_METHODS, f"flow {self.flow!r} must be one of {FLOW_METHODS}"),
            (
                self.apex_policy in APEX_POLICIES,
                f"apex_policy {self.apex_policy!r} must be one of {APEX_POLICIES}",
            ),
            (
                self.spotting in SPOTTING_METHODS,
                f"spotting {self.spotting!r} must be one of {SPOTTING_METHODS}",
            ),
            (self.size >= 4 and self.crop_size >= 16, "size must be >= 4 and crop_size >= 16"),
            (self.frames >= 1, "frames must be >= 1"),
            (self.margin >= 0 and self.magnify >= 0, "margin and magnify must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def item_shape(self) -> tuple[int, ...]:
        """Shape of one sample's array."""
        channels = 3 if self.color else 1
        if self.output == "maps":
            return (3, self.size, self.size)
        if self.output == "regions":
            return region_layout(self.regions).output_shape(3, self.size)
        if self.output == "apex":
            return (channels, self.size, self.size)
        return (self.frames, channels, self.size, self.size)

    def identity(self) -> dict[str, Any]:
        """The fields that decide an output (its cache key): the region layout only matters
        to "regions", so adding it left the keys of every other output as they were."""
        fields = dataclasses.asdict(self)
        if self.output != "regions":
            del fields["regions"]
        return fields
