"""Frames -> aligned faces -> motion (flow, strain, maps, sequences), cached on disk."""
