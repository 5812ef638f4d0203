"""Cut a byte stream into the SOAP envelopes it carries, chunk by chunk.

exchangelib reads a ``GetStreamingEvents`` response one byte at a time (``iter_content()`` with
``chunk_size=1`` and a Python-level loop per byte): about a hundred times slower than reading what the
socket has. :class:`EnvelopeSplitter` takes chunks of any size, split anywhere (inside a tag, between
envelopes), and returns each complete ``<…:Envelope>…</…:Envelope>`` document as soon as its end tag is in.
"""

from __future__ import annotations

import re

#: an Envelope start or end tag, any namespace prefix (``soap:``, ``s:``, none)
_ENVELOPE_TAG = re.compile(rb"<(/?)(?:[A-Za-z_][\w.\-]*:)?Envelope(?=[\s/>])[^>]*>")
#: chunk size for reading a chunked-encoded stream: urllib3 hands over each HTTP chunk as it arrives,
#: so a large size never waits for more bytes than the server sent
STREAM_READ_CHUNK = 64 * 1024


class EnvelopeSplitter:
    """Feed it chunks; it returns the envelopes they complete (bytes outside envelopes are dropped, like
    exchangelib's ``DocumentYielder`` drops what precedes an envelope)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._start: int | None = None  # where the envelope being collected begins
        self._scan = 0  # where the next tag search resumes

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        documents: list[bytes] = []
        for match in _ENVELOPE_TAG.finditer(self._buffer, self._scan):
            self._scan = match.end()
            if not match.group(1):
                if self._start is None:
                    self._start = match.start()
            elif self._start is not None:
                documents.append(bytes(self._buffer[self._start : match.end()]))
                self._start = None
        # a tag cut off by the chunk boundary can only begin at the last '<'
        partial = self._buffer.rfind(b"<", self._scan)
        self._scan = partial if partial >= 0 else len(self._buffer)  # tags before it were all looked at
        keep_from = self._start if self._start is not None else self._scan
        if keep_from:
            del self._buffer[:keep_from]
            self._scan = max(0, self._scan - keep_from)
            if self._start is not None:
                self._start = 0
        return documents
