"""Network addresses as the config writes them: ``host:port`` or ``[v6]:port``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_address(text: str) -> Address:
    """Parse ``host:port`` (``[::1]:80`` for IPv6); raise ValueError naming what was expected."""
    raw = text.strip()
    if raw.startswith("["):
        host, sep, port_text = raw[1:].partition("]:")
    else:
        host, sep, port_text = raw.rpartition(":")
    if not sep or not host or (":" in host and not raw.startswith("[")):
        raise ValueError(f'expected host:port, got "{text}"')
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f'expected a port 0-65535 in host:port, got "{text}"')
    return Address(host, int(port_text))
