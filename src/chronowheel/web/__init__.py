"""A web dashboard for an engine: ``dashboard(engine)`` (``pip install 'chronowheel[web]'``).

An ASGI app (Starlette) with server-rendered pages and a JSON API; its
templates and static files ship in the package, nothing is built or fetched.
``chronowheel worker --web HOST:PORT`` serves it read-only.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401  (Starlette's templates need it)
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed wherever the tests run
    raise ImportError("chronowheel.web needs starlette and jinja2: pip install 'chronowheel[web]'") from exc

from ._app import Auth as Auth
from ._app import dashboard as dashboard

__all__ = ["Auth", "dashboard"]
