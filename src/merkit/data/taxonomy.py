"""Label taxonomies: each dataset's own emotion words and the class sets the field compares on.

A taxonomy maps a dataset's (lower-cased) emotion word to a class name, or to None when the
protocol drops that emotion (e.g. CASME II "others" in the MEGC2019 3-class task). A word the
taxonomy does not know is an annotation error, reported with the row it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from merkit.errors import ConfigError, LabelError

MEGC3_CLASSES = ("negative", "positive", "surprise")

# Each dataset's own emotion words, in the order the dataset papers list them.
NATIVE_EMOTIONS: dict[str, tuple[str, ...]] = {
    "casme2": ("happiness", "surprise", "disgust", "repression", "others", "fear", "sadness"),
    "samm": ("anger", "contempt", "disgust", "fear", "sadness", "happiness", "surprise", "other"),
    "smic": ("negative", "positive", "surprise"),
    "casme3": ("happy", "disgust", "fear", "anger", "sad", "surprise", "others"),
    "mmew": ("happiness", "anger", "surprise", "disgust", "fear", "sadness", "others"),
}

# Spellings seen in the releases, folded onto the native word before mapping.
ALIASES: dict[str, dict[str, str]] = {
    "casme2": {"happy": "happiness", "other": "others", "sad": "sadness"},
    "samm": {"others": "other", "happy": "happiness", "sad": "sadness"},
    "smic": {"ne": "negative", "po": "positive", "sur": "surprise", "su": "surprise"},
    "casme3": {"happiness": "happy", "sadness": "sad", "other": "others"},
    "mmew": {"happy": "happiness", "sad": "sadness", "other": "others"},
}

FIVE_CLASS: dict[str, tuple[str, ...]] = {
    "casme2": ("happiness", "repression", "disgust", "surprise", "others"),
    "samm": ("anger", "contempt", "happiness", "surprise", "other"),
}

# MEGC2019 composite: negative / positive / surprise; every other word is dropped.
MEGC3_MAP: dict[str, dict[str, str]] = {
    "casme2": {
        "disgust": "negative",
        "repression": "negative",
        "happiness": "positive",
        "surprise": "surprise",
    },
    "samm": {
        "anger": "negative",
        "contempt": "negative",
        "disgust": "negative",
        "fear": "negative",
        "sadness": "negative",
        "happiness": "positive",
        "surprise": "surprise",
    },
    "smic": {"negative": "negative", "positive": "positive", "surprise": "surprise"},
    "casme3": {
        "anger": "negative",
        "disgust": "negative",
        "fear": "negative",
        "sad": "negative",
        "happy": "positive",
        "surprise": "surprise",
    },
    "mmew": {
        "anger": "negative",
        "disgust": "negative",
        "fear": "negative",
        "sadness": "negative",
        "happiness": "positive",
        "surprise": "surprise",
    },
}


@dataclass(frozen=True)
class Taxonomy:
    """A class set for one dataset family plus the word -> class mapping that feeds it."""

    name: str
    family: str  # "casme2", "samm", "smic", "casme3", "mmew"
    classes: tuple[str, ...]
    mapping: dict[str, str | None]

    def normalise(self, word: object) -> str:
        """The dataset's canonical spelling of an emotion word (lower case, aliases folded)."""
        text = str(word).strip().lower()
        return ALIASES.get(self.family, {}).get(text, text)

    def class_of(self, word: object, where: str) -> str | None:
        """Class name for `word`, None if this taxonomy drops it; `where` names the row on error."""
        native = self.normalise(word)
        if native not in self.mapping:
            known = ", ".join(sorted(self.mapping))
            raise LabelError(f"{where}: unknown emotion {word!r} (expected one of: {known})")
        return self.mapping[native]

    def index_of(self, word: object, where: str) -> int | None:
        """Class index for `word`, None if dropped."""
        name = self.class_of(word, where)
        return None if name is None else self.classes.index(name)


def taxonomy_names(family: str) -> list[str]:
    """Taxonomies available for a dataset family."""
    names = ["all"]
    if family in FIVE_CLASS:
        names.append("5class")
    names.append("3class")
    return names


def get_taxonomy(family: str, name: str = "all") -> Taxonomy:
    """Build taxonomy `name` ("all", "5class", "3class") for dataset family `family`."""
    if family not in NATIVE_EMOTIONS:
        raise ConfigError(f"unknown dataset family {family!r}; known: {', '.join(NATIVE_EMOTIONS)}")
    native = NATIVE_EMOTIONS[family]
    if name == "all":
        return Taxonomy("all", family, native, {w: w for w in native})
    if name == "5class":
        if family not in FIVE_CLASS:
            raise ConfigError(f"no 5-class taxonomy for {family}; use 'all' or '3class'")
        keep = FIVE_CLASS[family]
        return Taxonomy("5class", family, keep, {w: (w if w in keep else None) for w in native})
    if name in ("3class", "megc3"):
        table = MEGC3_MAP[family]
        return Taxonomy("3class", family, MEGC3_CLASSES, {w: table.get(w) for w in native})
    raise ConfigError(
        f"unknown taxonomy {name!r} for {family}; choose one of {', '.join(taxonomy_names(family))}"
    )
