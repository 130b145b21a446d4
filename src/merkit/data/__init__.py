"""Samples, label taxonomies and one loader per dataset."""

from merkit.data.sample import Sample
from merkit.data.taxonomy import Taxonomy, get_taxonomy

__all__ = ["Sample", "Taxonomy", "get_taxonomy"]
