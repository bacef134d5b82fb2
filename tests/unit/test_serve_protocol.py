"""``hygie serve``'s HTTP protocol (``cli.protocol``): what is written during one step of the event loop reaches
the socket as one write at the end of the step, in order; closing sends what is pending; a real server answers
kept-alive requests with it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from starlette.responses import Response

from hygie.cli.protocol import OneWriteTransport


class _Sink(asyncio.Protocol):
    pass


async def _pair() -> tuple[asyncio.Transport, socket.socket]:
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(_Sink, ours)
    return transport, peer


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` on a thread of its own: the thread running the suite may already have a loop running
    (Playwright's sync API leaves one), and ``asyncio.run`` refuses to start inside it."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coroutine)
        except BaseException as e:  # re-raised in the test's thread
            errors.append(e)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _received(peer: socket.socket) -> bytes:
    try:
        return peer.recv(65536)
    except BlockingIOError:
        return b""


def test_writes_of_one_step_reach_the_socket_together_and_in_order():
    async def run() -> None:
        transport, peer = await _pair()
        wrapped = OneWriteTransport(transport, asyncio.get_running_loop())
        wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        wrapped.write(b"hello")
        assert _received(peer) == b""  # nothing sent yet: still the same step
        assert wrapped.get_write_buffer_size() == 43
        await asyncio.sleep(0)
        assert _received(peer) == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
        wrapped.write(b"last")
        wrapped.close()  # closing sends what is pending first
        await asyncio.sleep(0.05)
        assert peer.recv(100) == b"last" and peer.recv(100) == b""  # then end of stream
        peer.close()

    _run(run())


def test_abort_drops_what_is_pending():
    async def run() -> None:
        transport, peer = await _pair()
        wrapped = OneWriteTransport(transport, asyncio.get_running_loop())
        wrapped.write(b"never sent")
        wrapped.abort()
        await asyncio.sleep(0.05)
        assert peer.recv(100) == b""
        peer.close()

    _run(run())


def test_a_server_with_it_answers_kept_alive_requests():
    app = FastAPI()

    @app.get("/n/{n}")
    async def echo(n: int) -> Response:
        return Response(str(n) * n, media_type="text/plain")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http="hygie.cli.protocol:OneWriteHttpToolsProtocol", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:  # one kept-alive connection
            for n in (1, 5, 9, 3):
                response = client.get(f"/n/{n}")
                assert response.status_code == 200 and response.text == str(n) * n
    finally:
        server.should_exit = True
        thread.join(timeout=30)
