"""``dnn serve``: an HTTP API and one web page to try trained runs — classify, translate (with the attention
heatmap), draw a digit, generate text. A thin shell over :func:`dnn.run.load_run` and the predictors.

Needs the ``serve`` extra (FastAPI, uvicorn): ``pip install 'dnn[serve]'``. :class:`ServeLimits` and the
inference functions import without it; :func:`create_app`, :func:`serve` and :func:`serve_in_thread` need it.
"""

from __future__ import annotations

from dnn.errors import ConfigError
from dnn.serve.limits import ServeLimits

__all__ = ["ServeLimits", "create_app", "require_serve_extra", "serve", "serve_in_thread"]


def require_serve_extra() -> None:
    """A one-line ConfigError saying what to install when FastAPI or uvicorn is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"dnn serve needs the serve extra ({err.name} is not installed): pip install 'dnn[serve]'"
        ) from None


def __getattr__(name: str):
    if name == "create_app":
        require_serve_extra()
        from dnn.serve.app import create_app

        return create_app
    if name in ("serve", "serve_in_thread"):
        require_serve_extra()
        from dnn.serve import server

        return getattr(server, name)
    raise AttributeError(f"module 'dnn.serve' has no attribute {name!r}")
