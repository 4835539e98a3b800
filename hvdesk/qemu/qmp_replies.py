"""The reply side of hvdesk's lean QMP command path: a stream that hands a command's reply
straight to the command waiting for it.

qemu.qmp routes every message through its reader task: the bytes wake the task, the task parses
and routes the reply, and only then is the command's own task woken - one event-loop turn more
per command than a client that reads its own reply. When a reply comes alone, and nothing read
before it is still waiting for that task, handing it over from the stream itself is the same
thing one turn sooner. Anything else - events, a reply arriving in pieces or with others,
garbage, the end of the stream - goes to qemu.qmp's reader exactly as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import SupportsIndex


class ReplyTap(asyncio.StreamReader):
    """A StreamReader whose `take(line)` may claim a lone complete line (a reply it routes) before
    it is buffered for qemu.qmp's reader; what it does not claim is buffered as usual."""

    def __init__(self, take: Callable[[bytes], bool], limit: int) -> None:
        super().__init__(limit=limit)
        self._take = take

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:  # bytes, from the transport
        # Only while the reader waits for data with nothing buffered (asyncio's own `_waiter` and
        # `_buffer`): everything before this line has then been handled, so the order of events
        # and replies is kept, and the reader's scan position in the empty buffer stays valid.
        if (isinstance(data, bytes) and self._waiter is not None and not self._buffer  # type: ignore[attr-defined]
                and data.endswith(b"\n") and data.count(b"\n") == 1 and self._take(data)):
            return
        super().feed_data(data)


async def open_connection(address: str | tuple[str, int], limit: int,
                          take: Callable[[bytes], bool]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio's open_unix_connection (a path) or open_connection (host, port), with a ReplyTap as the reader."""
    loop = asyncio.get_running_loop()
    reader = ReplyTap(take, limit)
    protocol = asyncio.StreamReaderProtocol(reader)
    if isinstance(address, str):
        transport, _ = await loop.create_unix_connection(lambda: protocol, address)
    else:
        transport, _ = await loop.create_connection(lambda: protocol, *address)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
