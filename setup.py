"""The HTTP data plane compiled to C with mypyc when it can be; pure Python otherwise.

The modules in :data:`COMPILED` are plain, fully typed Python. A regular install (``pip
install .``) compiles them with mypyc (a build requirement): the same code, with its
attribute reads and calls done in C, costs about half the instructions per request
(callgrind: 24,700 against 45,300).
The package works the same without it, only slower: the build falls back to the pure
Python modules (and says so) when there is no C compiler or Python headers, when
``NINELIVES_PURE=1`` is set, and for an editable install (where a compiled module beside
its source would hide every later edit of the source). All or nothing: a module compiled
alone would import the shared library that failed to build.
``ninelives --version`` tells which one runs.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
# What a request or a TCP connection runs through, and the objects it touches (pools,
# servers, balancers, listener counters), so that their attributes are read as C struct
# fields; what the uptime store's writer process does for every transition it records
# (the CPU it takes is taken from the data plane where cores are few); and what the
# uptime report reads and computes over a year of history (a third faster compiled).
COMPILED = [
    "src/ninelives/balance.py",
    "src/ninelives/events.py",
    "src/ninelives/http/context.py",
    "src/ninelives/http/downstream.py",
    "src/ninelives/http/exchange.py",
    "src/ninelives/http/heads.py",
    "src/ninelives/http/messages.py",
    "src/ninelives/http/retry.py",
    "src/ninelives/http/upstream.py",
    "src/ninelives/listener.py",
    "src/ninelives/pool.py",
    "src/ninelives/tcp.py",
    "src/ninelives/uptime/availability.py",
    "src/ninelives/uptime/batch.py",
    "src/ninelives/uptime/journal.py",
    "src/ninelives/uptime/ledger.py",
    "src/ninelives/uptime/report.py",
    "src/ninelives/uptime/schema.py",
]


# The commands that build a wheel; pip also runs this file for the metadata, which needs
# no compiling (mypyc's type check alone takes half a minute). An editable install
# (``editable_wheel``) is not among them: it stays pure Python.
BUILDS = ("bdist_wheel", "build", "build_ext", "install")


def say_pure(reason: str) -> None:
    print(f"ninelives: the data plane stays pure Python: {reason}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Build the compiled modules, or none of them."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no Python.h: the pure modules still work
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = []
            say_pure(f"the C build failed ({type(exc).__name__}: {exc})")


def extensions() -> list[object]:
    if not any(command in sys.argv for command in BUILDS):
        return []
    # pip builds in the source tree: what an earlier build left in build/lib would go
    # into this wheel too (a module since dropped from COMPILED, compiled from old code).
    shutil.rmtree(HERE / "build", ignore_errors=True)
    if os.environ.get("NINELIVES_PURE", "") not in ("", "0"):
        say_pure("NINELIVES_PURE is set")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        say_pure(f"no mypyc ({exc})")
        return []
    os.chdir(HERE)
    # No settings file (its plugin would need pydantic in the build): mypyc needs the
    # types only, which `mypy src` checks strictly. The build runs before the runtime
    # dependencies are installed: what they define is Any here, and imported modules
    # lend their types, not their errors.
    options = ["--config-file=", "--follow-imports=silent", "--ignore-missing-imports"]
    try:
        return list(mypycify([*options, *COMPILED], opt_level="3", strict_dunder_typing=False))
    except (Exception, SystemExit) as exc:  # mypy found an error: it exits
        say_pure(f"mypyc failed ({exc!r})")
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
