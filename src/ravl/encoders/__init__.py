"""Encoders: images and texts into one L2-normalised vector space."""
from .base import Encoder, ImageVectors, load_encoder

__all__ = ["Encoder", "ImageVectors", "load_encoder"]
