"""``ravl serve``: an HTTP API and a web page over one collection.

    from ravl.server import ServerSettings, create_app
    app = create_app(ServerSettings(collection="my-collection"))
"""
from .settings import ServerSettings


def __getattr__(name: str):
    # FastAPI is imported only when an app is made.
    if name == "create_app":
        from .app import create_app
        return create_app
    raise AttributeError(name)


__all__ = ["ServerSettings", "create_app"]
