"""User-facing errors: one sentence naming the file/row/frame at fault; the CLI exits with 2."""

from __future__ import annotations


class MerkitError(Exception):
    """A problem with the user's input or request (not a bug). The CLI prints it and exits 2."""

    exit_code = 2


class AnnotationError(MerkitError):
    """An annotation file is missing, empty, malformed, or holds a value that cannot be read."""


class LabelError(AnnotationError):
    """An emotion word that the chosen taxonomy does not know."""


class DataLayoutError(MerkitError):
    """Frames or folders are not where the dataset's layout says they should be."""


class ConfigError(MerkitError):
    """A configuration value or command-line option is invalid."""


class TrainingDiverged(MerkitError):
    """A fold's loss or weights became NaN or infinite: the run stops (exit 2) rather than
    report NaN probabilities as predictions. `fold` is the engine's fold index until the
    engine names it by its test subjects."""

    def __init__(self, model: str, fold: int | str, epoch: int, lr: float) -> None:
        super().__init__(model, fold, epoch, lr)  # args: what a worker process pickles
        self.model, self.fold, self.epoch, self.lr = model, fold, epoch, lr

    def __str__(self) -> str:
        fold = f"fold {self.fold + 1}" if isinstance(self.fold, int) else self.fold
        return (
            f"recipe {self.model}: training diverged in {fold}, epoch {self.epoch} (the loss or "
            f"the weights became NaN or infinite at lr {self.lr}); lower the learning rate or "
            "check the inputs"
        )
