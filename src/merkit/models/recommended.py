"""The recommended recipe: the probability average of a network and two classic SVMs.

`cabm` (a small ConvMixer with attention), `map-svm` (the median-centred maps averaged over a
7x7 grid) and `hoof-svm` (histograms of oriented flow over a 4x4 grid) read the same 3x28x28
u/v/strain map and make different mistakes, so the mean of their class probabilities is right
more often than any of them: under LOSO on the 380 MEGC2019 development maps the three score
UF1 about 0.71 / 0.76 / 0.74 alone and about 0.76 together, with less spread over seeds than the
network alone (README has the measured figures). The weights are equal and fixed: nothing is
fitted on a held-out subject, nor on the out-of-fold predictions of the members.

`merkit train` uses it when no model is named. Each member is fitted by its own engine with its
own shipped recipe (`merkit.training.average`); the fitted average is one `ProbabilityAverage`
module, so its checkpoint, `merkit predict` and the ONNX export hold all three members.
"""

from __future__ import annotations

from merkit.models.blocks import ProbabilityAverage
from merkit.models.registry import InputSpec, create_model, register_model

MEMBERS = ("cabm", "map-svm", "hoof-svm")


@register_model(
    "recommended",
    summary="Recommended: the mean probabilities of cabm, map-svm and hoof-svm on u/v/strain maps",
    input=InputSpec("maps", 3, (28, 28)),
    training="average",
    members=MEMBERS,
)
def recommended(num_classes: int = 3, in_chans: int = 3) -> ProbabilityAverage:
    """The untrained average of the members (each fitted by its own engine)."""
    return ProbabilityAverage([create_model(m, num_classes, in_chans) for m in MEMBERS])
