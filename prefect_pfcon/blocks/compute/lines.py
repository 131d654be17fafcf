"""A container's output as lines: linear time and bounded memory whatever the plugin prints."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

MAX_LINE_BYTES = 64 * 1024
"""Longest line kept whole; a longer one comes out in pieces of at most this many bytes."""


def _text(data: bytes | bytearray) -> str:
    return data.decode("utf-8", errors="replace")


class LineSplitter:
    """Bytes in, text lines out (without their ``\\n``). At most ``max_line`` bytes wait for
    their newline: a longer line is cut into pieces, at a UTF-8 character boundary."""

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._pending = bytearray()
        self._max_line = max_line

    def feed(self, data: bytes) -> list[str]:
        """The lines ``data`` completes, and the pieces of lines grown past ``max_line``."""
        pending = self._pending
        scanned = len(pending)  # what is pending holds no newline
        pending += data
        lines: list[str] = []
        start = 0
        while (end := pending.find(b"\n", scanned)) >= 0:
            start = self._cut(pending, start, end, lines)
            lines.append(_text(pending[start:end]))
            start = scanned = end + 1
        del pending[: self._cut(pending, start, len(pending), lines)]
        return lines

    def _cut(self, data: bytearray, start: int, end: int, lines: list[str]) -> int:
        """Append pieces of ``data[start:end]`` while it is longer than ``max_line``; where the
        rest starts."""
        while end - start > self._max_line:
            cut = start + self._max_line
            while cut - start > self._max_line - 4 and (data[cut] & 0xC0) == 0x80:
                cut -= 1  # a UTF-8 continuation byte: cut before its character
            lines.append(_text(data[start:cut]))
            start = cut
        return start

    def close(self) -> list[str]:
        """What is left when the stream ends (a last line without a newline)."""
        rest, self._pending = self._pending, bytearray()
        return [_text(rest)] if rest else []


def split_lines(chunks: Iterable[bytes], max_line: int = MAX_LINE_BYTES) -> Iterator[str]:
    """The lines of a stream of byte chunks, as they complete."""
    splitter = LineSplitter(max_line)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.close()
