"""The suite runs offline: hub libraries are told so, and any real network access fails loudly."""
from __future__ import annotations

import os
import socket

import pytest

from conftest import NetworkAccessError


def test_hub_libraries_are_offline():
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_non_loopback_connections_fail_the_test():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(NetworkAccessError, match="network"):
            s.connect(("93.184.216.34", 443))


def test_loopback_still_works():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    with server, socket.create_connection(server.getsockname(), timeout=5) as client:
        conn, _ = server.accept()
        with conn:
            client.sendall(b"ok")
            assert conn.recv(2) == b"ok"

