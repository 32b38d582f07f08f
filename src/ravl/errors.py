"""One error hierarchy for everything ravl raises on purpose.

Every message says what went wrong *and* how to fix it; the CLI prints ``str(error)`` as one
line, so keep messages to a single sentence or two.
"""
from __future__ import annotations


class RavlError(Exception):
    """Base of every error ravl raises for users."""


# --- configuration and backends -------------------------------------------------------------
class ConfigError(RavlError):
    """A setting, option or argument is invalid."""


class SpecError(ConfigError):
    """A backend spec string cannot be parsed."""


class UnknownBackendError(ConfigError):
    """A spec names a backend family that is not registered."""


class MissingDependencyError(RavlError):
    """An optional dependency needed by a backend is not installed."""


class MissingExtraError(MissingDependencyError):
    """A feature needs one of ravl's extras: the message names it (``pip install 'ravl[EXTRA]'``)."""


class EngineError(RavlError):
    """A distributed engine (Ray) is unreachable or its job failed; re-running resumes."""


class ShardError(EngineError):
    """Shards cannot be searched together (e.g. built with different encoders): re-index one of them."""


class ShardUnavailableError(ShardError):
    """A shard did not answer in time (its replica died and Ray Serve is replacing it): retry shortly."""


class ModelNotAvailableError(RavlError):
    """Model weights cannot be found locally and cannot be downloaded."""


# --- collections ------------------------------------------------------------------------------
class CollectionError(RavlError):
    """A collection cannot be opened, read or written."""


class CollectionNotFoundError(CollectionError):
    """The collection directory does not exist or holds no collection."""


class EncoderMismatchError(CollectionError):
    """The collection was built with a different encoder than the one requested."""


class SchemaVersionError(CollectionError):
    """The collection's schema is newer than this ravl understands."""


class ItemNotFoundError(CollectionError):
    """No item with that id or uri exists in the collection."""


class BridgeError(CollectionError):
    """The collection's tuned bridge is missing or damaged: run 'ravl tune --reset'."""


# --- input data -------------------------------------------------------------------------------
class InputError(RavlError):
    """Input data (a file, a manifest, a query) is malformed."""


class SourceError(InputError):
    """A dataset source (folder, manifest, COCO file, Karpathy split) cannot be read."""


class ImageError(InputError):
    """A file is not a decodable, safe image."""


class UnsupportedImageError(ImageError):
    """A file's content is not one of the allowed image formats (JPEG, PNG, GIF, WebP, BMP, TIFF)."""


class TuneDataError(InputError):
    """A collection holds too few captioned pairs to tune a bridge on: index more captioned images."""


# --- generation -------------------------------------------------------------------------------
class GenerationError(RavlError):
    """A language-model backend failed to produce text."""


class GenerationTimeoutError(GenerationError):
    """The model did not answer in time: raise the backend's timeout or ask for fewer tokens."""


class GeneratorUnreachableError(GenerationError):
    """The model server cannot be reached: start it or fix its address (base_url)."""


class NoImageGeneratorError(ConfigError):
    """No image generator is configured: pass --generator SPEC or set RAVL_IMAGE_GENERATOR."""
