"""ravl: retrieval-augmented vision-language toolkit.

Public face::

    from ravl import open_collection, load_encoder, load_generator
"""
__version__ = "0.1.0"

from .errors import RavlError  # noqa: E402


def __getattr__(name: str):
    # Lazy: importing ravl must stay cheap (the CLI imports it for --help).
    if name == "open_collection":
        from .collection import open_collection
        return open_collection
    if name == "load_encoder":
        from .encoders.base import load_encoder
        return load_encoder
    if name == "load_generator":
        from .generate.base import load_generator
        return load_generator
    if name == "index_sources":
        from .ingest.pipeline import index_sources
        return index_sources
    if name == "index_records":
        from .ingest.pipeline import index_records
        return index_records
    raise AttributeError(name)


__all__ = ["RavlError", "open_collection", "load_encoder", "load_generator", "index_sources", "index_records",
           "__version__"]
