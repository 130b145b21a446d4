from __future__ import annotations

import pytest

from merkit.data.taxonomy import FAMILIES, Family, get_taxonomy, taxonomy_names
from merkit.errors import ConfigError, LabelError


def test_casme2_megc3_mapping_and_drops() -> None:
    tax = get_taxonomy("casme2", "3class")
    assert tax.classes == ("negative", "positive", "surprise")
    assert tax.class_of("Disgust", "row 2") == "negative"
    assert tax.class_of("repression", "row 2") == "negative"
    assert tax.class_of("happiness", "row 2") == "positive"
    assert tax.index_of("surprise", "row 2") == 2
    for dropped in ("others", "fear", "sadness"):
        assert tax.class_of(dropped, "row 2") is None


def test_samm_megc3_mapping_and_drops() -> None:
    tax = get_taxonomy("samm", "3class")
    for word in ("Anger", "Contempt", "Disgust", "Fear", "Sadness"):
        assert tax.class_of(word, "row 15") == "negative"
    assert tax.class_of("Happiness", "row 15") == "positive"
    assert tax.class_of("Other", "row 15") is None


def test_smic_is_already_three_class() -> None:
    tax = get_taxonomy("smic", "3class")
    assert [tax.index_of(w, "x") for w in ("negative", "positive", "surprise")] == [0, 1, 2]


def test_five_class_sets() -> None:
    casme2 = get_taxonomy("casme2", "5class")
    assert casme2.classes == ("happiness", "repression", "disgust", "surprise", "others")
    assert casme2.class_of("fear", "x") is None and casme2.class_of("sadness", "x") is None
    samm = get_taxonomy("samm", "5class")
    assert samm.classes == ("anger", "contempt", "happiness", "surprise", "other")
    assert samm.class_of("Disgust", "x") is None


def test_native_taxonomy_keeps_every_word() -> None:
    tax = get_taxonomy("samm", "all")
    assert len(tax.classes) == 8 and tax.class_of("Contempt", "x") == "contempt"


def test_unknown_word_names_the_row() -> None:
    with pytest.raises(LabelError, match=r"coding\.xlsx row 7: unknown emotion 'joy'"):
        get_taxonomy("casme2", "5class").class_of("joy", "coding.xlsx row 7")


def test_unknown_taxonomy_and_family() -> None:
    assert taxonomy_names("smic") == ["all", "3class"]
    with pytest.raises(ConfigError, match="no 5-class taxonomy for smic"):
        get_taxonomy("smic", "5class")
    with pytest.raises(ConfigError, match="unknown dataset family"):
        get_taxonomy("ckplus")


def test_a_family_is_one_record() -> None:
    assert list(FAMILIES) == ["casme2", "samm", "smic", "casme3", "mmew"]
    assert taxonomy_names("casme2") == ["all", "5class", "3class"]
    assert get_taxonomy("casme3", "all").normalise(" Sadness ") == "sad"  # its alias
    with pytest.raises(ValueError, match="family 'toy': megc3 names 'joy', not a native word"):
        Family("toy", native=("glee",), aliases={}, megc3={"joy": "positive"})
