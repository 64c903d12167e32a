"""Run ``ninelives model`` as the real command, on examples/arch.yaml by default."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.support.node import NINELIVES, ROOT

ARCH = ROOT / "examples" / "arch.yaml"


def model(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(NINELIVES), "model", *args], capture_output=True, text=True,
                          timeout=60)


def observed(*source: str) -> dict[str, Any]:
    """The comparison of examples/arch.yaml's one linked component (server, pool app) with
    the last hour of a node's history read from ``source`` (--admin, --state-dir, --config)."""
    done = model(str(ARCH), "--observed", "--window", "1h", "--format", "json", *source)
    assert done.returncode == 0, done.stderr
    (server,) = json.loads(done.stdout)["observed"]
    assert (server["component"], server["pool"]) == ("server", "app")
    found: dict[str, Any] = server
    return found
