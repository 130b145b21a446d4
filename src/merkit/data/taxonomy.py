"""Label taxonomies: each dataset's own emotion words and the class sets the field compares on.

A taxonomy maps a dataset's (lower-cased) emotion word to a class name, or to None when the
protocol drops that emotion (e.g. CASME II "others" in the MEGC2019 3-class task). A word the
taxonomy does not know is an annotation error, reported with the row it came from.

What a dataset family's words are and how each class set reads them is one `Family` record in
`FAMILIES`: adding a family is adding its record (and its loader in `merkit.data.loaders`).
"""

from __future__ import annotations

from dataclasses import dataclass

from merkit.errors import ConfigError, LabelError

MEGC3_CLASSES = ("negative", "positive", "surprise")


@dataclass(frozen=True)
class Family:
    """Everything merkit knows about one dataset family's emotion words, in one record."""

    name: str
    native: tuple[str, ...]  # the dataset's own words, in the order its paper lists them
    aliases: dict[str, str]  # spellings seen in the releases -> the native word
    megc3: dict[str, str]  # native word -> MEGC2019 3-class name; every other word is dropped
    five_class: tuple[str, ...] | None = None  # the field's common 5-class set, if it has one

    def __post_init__(self) -> None:
        # A word outside `native` would never be mapped: refuse the record, not a later row.
        words = {
            "aliases": set(self.aliases.values()),
            "megc3": set(self.megc3),
            "five_class": set(self.five_class or ()),
        }
        for part, used in words.items():
            stray = sorted(used - set(self.native))
            if stray:
                raise ValueError(
                    f"family {self.name!r}: {part} names {stray[0]!r}, not a native word"
                )
        if not set(self.megc3.values()) <= set(MEGC3_CLASSES):
            raise ValueError(
                f"family {self.name!r}: megc3 maps onto a class outside {MEGC3_CLASSES}"
            )


# One record per family: a new dataset family is one more entry here.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "casme2",
            native=("happiness", "surprise", "disgust", "repression", "others", "fear", "sadness"),
            aliases={"happy": "happiness", "other": "others", "sad": "sadness"},
            megc3={
                "disgust": "negative",
                "repression": "negative",
                "happiness": "positive",
                "surprise": "surprise",
            },
            five_class=("happiness", "repression", "disgust", "surprise", "others"),
        ),
        Family(
            "samm",
            native=(
                "anger",
                "contempt",
                "disgust",
                "fear",
                "sadness",
                "happiness",
                "surprise",
                "other",
            ),
            aliases={"others": "other", "happy": "happiness", "sad": "sadness"},
            megc3={
                "anger": "negative",
                "contempt": "negative",
                "disgust": "negative",
                "fear": "negative",
                "sadness": "negative",
                "happiness": "positive",
                "surprise": "surprise",
            },
            five_class=("anger", "contempt", "happiness", "surprise", "other"),
        ),
        Family(
            "smic",
            native=("negative", "positive", "surprise"),
            aliases={"ne": "negative", "po": "positive", "sur": "surprise", "su": "surprise"},
            megc3={"negative": "negative", "positive": "positive", "surprise": "surprise"},
        ),
        Family(
            "casme3",
            native=("happy", "disgust", "fear", "anger", "sad", "surprise", "others"),
            aliases={"happiness": "happy", "sadness": "sad", "other": "others"},
            megc3={
                "anger": "negative",
                "disgust": "negative",
                "fear": "negative",
                "sad": "negative",
                "happy": "positive",
                "surprise": "surprise",
            },
        ),
        Family(
            "mmew",
            native=("happiness", "anger", "surprise", "disgust", "fear", "sadness", "others"),
            aliases={"happy": "happiness", "sad": "sadness", "other": "others"},
            megc3={
                "anger": "negative",
                "disgust": "negative",
                "fear": "negative",
                "sadness": "negative",
                "happiness": "positive",
                "surprise": "surprise",
            },
        ),
    )
}


@dataclass(frozen=True)
class Taxonomy:
    """A class set for one dataset family plus the word -> class mapping that feeds it."""

    name: str
    family: Family
    classes: tuple[str, ...]
    mapping: dict[str, str | None]

    def normalise(self, word: object) -> str:
        """The dataset's canonical spelling of an emotion word (lower case, aliases folded)."""
        text = str(word).strip().lower()
        return self.family.aliases.get(text, text)

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


def family(name: str) -> Family:
    """The record of dataset family `name`."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown dataset family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def taxonomy_names(family_name: str) -> list[str]:
    """Taxonomies available for a dataset family."""
    five = ["5class"] if family(family_name).five_class else []
    return ["all", *five, "3class"]


def get_taxonomy(family_name: str, name: str = "all") -> Taxonomy:
    """Build taxonomy `name` ("all", "5class", "3class") for dataset family `family_name`."""
    record = family(family_name)
    native = record.native
    if name == "all":
        return Taxonomy("all", record, native, {w: w for w in native})
    if name == "5class":
        keep = record.five_class
        if keep is None:
            raise ConfigError(f"no 5-class taxonomy for {family_name}; use 'all' or '3class'")
        return Taxonomy("5class", record, keep, {w: (w if w in keep else None) for w in native})
    if name in ("3class", "megc3"):
        table = record.megc3
        return Taxonomy("3class", record, MEGC3_CLASSES, {w: table.get(w) for w in native})
    raise ConfigError(
        f"unknown taxonomy {name!r} for {family_name}; choose one of "
        f"{', '.join(taxonomy_names(family_name))}"
    )
