"""Exporting trained models for serving: SavedModel in TF Serving's folder layout."""

from vit_zoo.export.saved_model import saved_model

__all__ = ["saved_model"]
