"""``ninelives check`` and ``ninelives schema``, run as the real command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.node import NINELIVES

GOOD = """\
node: {name: lb-1, state_dir: ./state}
admin: {listen: 127.0.0.1:0, token: secret}
listeners:
  - name: web
    bind: [127.0.0.1:0, 127.0.0.2:0]
    protocol: http
    pool: app
    routes:
      - match: {host: api.example.test, path_prefix: /v1}
        pool: api
pools:
  app:
    balance: roundrobin
    sticky: {cookie: NLSTICKY}
    health:
      http: {path: /healthz, expect: 200}
      interval: 1s
      timeout: 500ms
      rise: 2
      fall: 2
    timeouts: {connect: 1s, response: 30s, idle: 60s}
    tiers:
      - provider: cloud-a
        servers:
          - {name: a1, address: 127.0.0.1:8001, weight: 2}
          - {name: a2, address: 127.0.0.1:8002}
      - provider: cloud-b
        servers:
          - {name: b1, address: 127.0.0.1:8003}
  api:
    balance: hash
    hash_on: header:X-User
    servers:
      - {name: api1, address: 127.0.0.1:9001}
      - {name: api2, address: 127.0.0.1:9002, backup: true}
"""

BAD = """\
listeners:
  - name: web
    bind: 127.0.0.1:0
    protocol: http
    pool: missing
pools:
  app:
    balance: fastest
    bogus: 1
    health: {http: {path: /healthz}, interval: 5 parsecs}
    servers:
      - {name: a1, address: 10.0.0.1}
      - {name: a1, address: 127.0.0.1:8001}
"""


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NINELIVES), *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_check_accepts_a_good_config(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = run_cli("check", str(path))
    assert result.returncode == 0, result
    assert "ok" in result.stdout


def test_check_reports_every_problem_with_its_path_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    result = run_cli("check", str(path))
    assert result.returncode == 1, result
    lines = (result.stdout + result.stderr).splitlines()

    def problem(prefix: str, *words: str) -> str:
        found = [
            line
            for line in lines
            if line.startswith(prefix) and all(w.lower() in line.lower() for w in words)
        ]
        assert found, f"no line starting {prefix!r} with {words} in:\n" + "\n".join(lines)
        return found[0]

    assert 'pools.app.servers[0].address: expected host:port, got "10.0.0.1"' in lines
    problem("pools.app.bogus: ")
    problem("pools.app.health.interval: ", "parsecs")
    problem("pools.app.balance: ", "fastest")
    problem("listeners[0].pool: ", "missing")
    problem("pools.app.servers[1].name: ", "duplicate", "a1")


def test_check_rejects_a_config_that_is_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("listeners: [\n  - {name: web\n")
    result = run_cli("check", str(path))
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr


def test_schema_prints_a_json_schema(tmp_path: Path) -> None:
    result = run_cli("schema")
    assert result.returncode == 0, result
    schema = json.loads(result.stdout)
    assert "properties" in schema
    for key in ("listeners", "pools"):
        assert key in schema["properties"], sorted(schema["properties"])
