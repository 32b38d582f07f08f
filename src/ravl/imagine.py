"""Kept for code written against ``ravl.imagine``: the imagine job lives in :mod:`ravl.tasks.imagine`."""
from .tasks.imagine import (
    GENERATOR_ENV,
    NO_GENERATOR,
    ImagineResult,
    a1111_parameters,
    check_prompt,
    check_request,
    find_references,
    imagine,
    load_references,
    png_with_provenance,
    read_provenance,
    resolve_generator_spec,
    self_check,
)

__all__ = ["GENERATOR_ENV", "NO_GENERATOR", "ImagineResult", "a1111_parameters", "check_prompt", "check_request",
           "find_references", "imagine", "load_references", "png_with_provenance", "read_provenance",
           "resolve_generator_spec", "self_check"]
