"""Image generators: a prompt (and reference images) in, a PIL image out. Backends are chosen
by spec strings through the registry's ``image_generators`` kind (``diffusers:``,
``openai-images:``, ``a1111:``, ``sdcpp:``); nothing heavy is imported until a spec asks for it."""
from .base import MODES, GeneratedImage, ImageGenerator, ImageParams, load_image_generator, parse_size

__all__ = ["MODES", "GeneratedImage", "ImageGenerator", "ImageParams", "load_image_generator", "parse_size"]
