"""Models: a registry (`create_model`, `list_models`) and one module per model family."""

from merkit.models import (  # noqa: F401  (register the models)
    c3dgru,
    cabm,
    convat,
    hoof,
    htnet,
    icip24,
    lbptop,
    mapsvm,
    mol,
    offapexnet,
    recommended,
    ststnet,
)
from merkit.models.registry import (
    InputSpec,
    ModelDescriptor,
    Preset,
    create_model,
    get_descriptor,
    list_models,
    register_model,
    stack_models,
    unstack_model,
)

__all__ = [
    "InputSpec",
    "ModelDescriptor",
    "Preset",
    "create_model",
    "get_descriptor",
    "list_models",
    "register_model",
    "stack_models",
    "unstack_model",
]
