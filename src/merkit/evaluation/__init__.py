"""Splitters, pooled metrics and the leakage audit: the toolkit's promise of honest figures."""
