"""Listening sockets of a node with a VIP may send from an address no longer on the host."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from ninelives.listener import answer_from_a_vip_gone


@pytest.mark.skipif(os.geteuid() != 0, reason="IP_TRANSPARENT needs CAP_NET_ADMIN")
def test_the_listening_socket_carries_ip_transparent() -> None:
    async def scenario() -> None:
        server = await asyncio.get_running_loop().create_server(
            asyncio.Protocol, "127.0.0.1", 0, start_serving=False)
        try:
            (sock,) = server.sockets
            assert sock.getsockopt(socket.SOL_IP, socket.IP_TRANSPARENT) == 0
            assert answer_from_a_vip_gone(server) is None
            assert sock.getsockopt(socket.SOL_IP, socket.IP_TRANSPARENT) == 1
        finally:
            server.close()

    asyncio.run(scenario())
