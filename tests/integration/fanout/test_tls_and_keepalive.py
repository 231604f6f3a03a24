"""Transport guarantees of the stream: wss:// with a configured certificate, ping keep-alive."""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import subprocess

import pytest
from websockets.asyncio.client import connect

from tests.integration.fanout.conftest import eventually, open_client, recv_json, stream_token


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 made with openssl."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_with_a_certificate_the_stream_is_wss_and_plain_ws_is_refused(
    start_server, certificate
):
    """The server announces wss://; a client trusting the certificate authenticates over TLS."""
    cert, key = certificate
    server = await start_server(tls_cert=cert, tls_key=key)
    assert server.url.startswith("wss://127.0.0.1:")
    trust = ssl.create_default_context(cafile=str(cert))
    ws = await open_client(server, token=stream_token(), ssl=trust)
    await ws.close()
    with pytest.raises(Exception):  # noqa: B017 - any handshake failure will do
        async with asyncio.timeout(5):
            await connect(server.url.replace("wss://", "ws://"), open_timeout=3)


async def test_a_peer_that_never_answers_pings_is_closed_after_the_timeout(start_server):
    """A raw socket that upgrades and then ignores the server's pings is closed within ~1 s."""
    server = await start_server(ping_interval_s=0.2, ping_timeout_s=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(5):
        response = await reader.readuntil(b"\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 101")
        opcodes = []
        while True:  # read frames (never answering) until the server hangs up
            header = await reader.read(2)
            if len(header) < 2:
                break
            opcode, length = header[0] & 0x0F, header[1] & 0x7F
            if length == 126:
                length = int.from_bytes(await reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await reader.readexactly(8), "big")
            await reader.readexactly(length)
            opcodes.append(opcode)
    closed_after = asyncio.get_running_loop().time() - started
    writer.close()
    assert 0x9 in opcodes, f"no ping frame among {opcodes}"
    assert closed_after < 2.0  # ping 0.2 s + timeout 0.3 s; the auth timeout is 10 s
    await eventually(lambda: server.connections == 0)


async def test_a_client_answering_pings_stays_connected_past_several_intervals(start_server):
    """A normal client (the library answers pings) is still served after 4 ping intervals."""
    server = await start_server(ping_interval_s=0.1, ping_timeout_s=0.2)
    ws = await open_client(server, token=stream_token())
    await asyncio.sleep(0.5)
    await ws.send('{"action":"subscribe","quotes":["AAA"]}')
    assert (await recv_json(ws))[0]["T"] == "subscription"
    await ws.close()
