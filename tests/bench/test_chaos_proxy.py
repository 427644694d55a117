"""The chaos soak's TCP proxy: pass, delay, black-hole and drop, switched while connected."""

import asyncio
import time

import pytest

from bench.chaos_proxy import Proxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float = 1.0) -> bytes:
    writer.write(b"ping")
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(4), timeout)


async def test_the_proxy_passes_delays_blackholes_and_drops():
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    proxy = Proxy(server.sockets[0].getsockname()[1])
    port = await proxy.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _roundtrip(reader, writer) == b"ping"
        proxy.set_mode("delay", 100)
        began = time.monotonic()
        assert await _roundtrip(reader, writer) == b"ping"
        assert time.monotonic() - began >= 0.2  # 100 ms each way
        proxy.set_mode("blackhole")
        with pytest.raises(TimeoutError):
            await _roundtrip(reader, writer, timeout=0.3)  # nothing back, and the socket stays open
        assert not reader.at_eof()
        proxy.set_mode("pass")
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _roundtrip(reader, writer) == b"ping"
        proxy.set_mode("drop")  # the open connection is reset, and so is a new one
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await _roundtrip(reader, writer)
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await _roundtrip(reader, writer)
        writer.close()
    finally:
        await proxy.stop()
        server.close()
        await server.wait_closed()
