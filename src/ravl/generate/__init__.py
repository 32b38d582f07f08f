"""Generators: language-model backends that write text from retrieved evidence."""
from .base import GenerationParams, Generator, load_generator

__all__ = ["GenerationParams", "Generator", "load_generator"]
