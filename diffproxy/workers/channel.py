"""Messages between the owner process and the worker processes it started.

Length-prefixed pickle frames over a socketpair the owner created and the worker inherited:
both ends are this program, run by the same user, so pickle's trust model holds (nothing
else can reach an unnamed socketpair).
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

_LENGTH = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024  # far above any real frame; a corrupt length fails fast


class ChannelClosed(Exception):
    """The other end went away (EOF)."""


def write(writer: asyncio.StreamWriter, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(_LENGTH.pack(len(data)) + data)


async def read(reader: asyncio.StreamReader) -> Any:
    try:
        head = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(head)
        if length > MAX_FRAME:
            raise ChannelClosed(f"frame of {length} bytes: the channel is corrupt")
        return pickle.loads(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise ChannelClosed(str(exc) or type(exc).__name__) from None
