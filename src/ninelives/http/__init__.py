"""HTTP/1.1 reverse proxying: downstream (client) and upstream (server) protocols."""

from importlib.util import find_spec


def build() -> str:
    """How the data plane runs: compiled to C by mypyc at install (see setup.py), or as
    the pure Python it was written in."""
    spec = find_spec("ninelives.http.downstream")
    origin = spec.origin if spec is not None else None
    return "compiled (mypyc)" if origin and not origin.endswith(".py") else "pure Python"
