"""Turning an uploaded byte stream into records, incrementally and in bounded memory.

Pure: no I/O. Each reader is fed chunks as they arrive and returns the records completed so
far; the caller never needs the whole file. Memory is bounded by the chunk size plus one record
(a record larger than MAX_RECORD_CHARS is skipped and reported, never buffered whole).

Row numbers are the ones a spreadsheet shows: in a CSV the header is row 1 and a record with a
quoted line break is still one row; in NDJSON a row is a line.
"""

from __future__ import annotations

import codecs
import csv
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from services.ingest.config import MAX_GZIP_RATIO, MAX_INFLATED_BYTES

MAX_RECORD_CHARS = 1_048_576
"""A record (row) longer than this is rejected; csv's own limit per cell is 131,072."""
DELIMITERS = (",", ";", "\t", "|")
_GZIP_MAGIC = b"\x1f\x8b"
INFLATE_SLICE = 1 << 20
"""Bytes of inflated gzip handed on at once: however far a small body inflates, it is read in
slices of this size, each parsed before the next is inflated."""
RATIO_GRACE_BYTES = 16 << 20
"""Inflated bytes before the compression ratio is checked: a small, very repetitive list may
compress far better than a large one."""


class BadUpload(ValueError):
    """The upload as a whole cannot be read (not UTF-8, not gzip, empty, no header...).
    `str(exc)` is the reason for the uploader."""


class UploadTooLarge(BadUpload):
    """The upload passes a size limit of this replica (inflated gzip, compression ratio, spool
    bytes): the client gets 413 and `str(exc)` as the reason; nothing of it is published."""


@dataclass(frozen=True)
class Record:
    """One row: its number as a spreadsheet shows it, and either its cells (CSV: a list of
    strings; NDJSON: a JSON object) or the reason it could not be read."""

    row: int
    cells: list[str] | dict[str, Any] | None
    problem: str | None = None


class GzipInflater:
    """gzip inflated in slices of at most `slice_bytes`, so memory does not depend on how far
    the body inflates: `push` compressed bytes, then take `next_slice()` until it returns b"".

    Refuses (`UploadTooLarge`) a body that inflates past `max_bytes` in all, or, once past
    RATIO_GRACE_BYTES, to more than `max_ratio` times the compressed bytes it consumed (a
    compression bomb): checked per slice, so at most one slice past a limit is ever inflated.
    """

    def __init__(
        self, *, max_bytes: int, max_ratio: float, slice_bytes: int = INFLATE_SLICE
    ) -> None:
        self._inflater = zlib.decompressobj(wbits=31)
        self._pending = b""
        self._max_bytes = max_bytes
        self._max_ratio = max_ratio
        self._slice_bytes = slice_bytes
        self.bytes_in = 0  # compressed bytes consumed
        self.bytes_out = 0

    @property
    def backlog(self) -> bool:
        """Pushed bytes are still waiting to be inflated."""
        return bool(self._pending)

    def push(self, data: bytes) -> None:
        self._pending = self._pending + data if self._pending else data

    def next_slice(self) -> bytes:
        if not self._pending:
            return b""
        try:
            out = self._inflater.decompress(self._pending, self._slice_bytes)
        except zlib.error as exc:
            raise BadUpload(f"the body starts like gzip but is not valid gzip: {exc}") from None
        self.bytes_in += len(self._pending) - len(self._inflater.unconsumed_tail)
        self._pending = self._inflater.unconsumed_tail
        self.bytes_out += len(out)
        if self.bytes_out > self._max_bytes:
            raise UploadTooLarge(
                f"the gzip body inflates to more than {self._max_bytes:,} bytes, the limit of "
                "one import: split the list"
            )
        if self.bytes_out > RATIO_GRACE_BYTES and self.bytes_out > self._max_ratio * max(
            self.bytes_in, 1
        ):
            raise UploadTooLarge(
                f"the gzip body inflates more than {self._max_ratio:g} times its compressed "
                "size (a compression bomb?); send it uncompressed or split it"
            )
        return out

    def finish(self) -> bytes:
        """What the inflater still holds; raises `BadUpload` for a truncated stream."""
        tail = self._inflater.flush()
        if not self._inflater.eof:
            raise BadUpload("the gzip body ends before its end marker (truncated upload?)")
        return tail


class TextDecoder:
    """Bytes to text: gzip inflated when the body starts with gzip's magic bytes (whatever
    the headers say), then UTF-8 (a BOM is dropped) or, with a UTF-16 BOM, UTF-16 (Excel's
    "Unicode text"). Anything else that is not valid UTF-8 is a `BadUpload`.

    A gzip body is inflated a slice (`INFLATE_SLICE`) at a time: `feed` returns the text of the
    first slice of what it was given and, while `backlog` is true, `more()` returns the next;
    read the backlog before feeding more, or the memory held grows with the inflated size.
    """

    def __init__(
        self,
        *,
        max_inflated_bytes: int = MAX_INFLATED_BYTES,
        max_gzip_ratio: float = MAX_GZIP_RATIO,
        inflate_slice: int = INFLATE_SLICE,
    ) -> None:
        self._head = b""
        self._decoder: codecs.IncrementalDecoder | None = None
        self._inflater: GzipInflater | None = None
        self._limits = (max_inflated_bytes, max_gzip_ratio, inflate_slice)
        self.bytes_in = 0
        self._decoded_bytes = 0

    @property
    def backlog(self) -> bool:
        return self._inflater is not None and self._inflater.backlog

    def feed(self, data: bytes) -> str:
        self.bytes_in += len(data)
        if self._decoder is None:
            self._head += data
            if len(self._head) < 4:
                return ""
            data, self._head = self._head, b""
            self._choose(data)
        if self._inflater is None:
            return self._decode(data, final=False)
        self._inflater.push(data)
        return self.more()

    def more(self) -> str:
        """The text of the next inflated slice ("" once the backlog is read)."""
        if self._inflater is None:
            return ""
        return self._decode(self._inflater.next_slice(), final=False)

    def finish(self) -> str:
        if self._decoder is None:
            data, self._head = self._head, b""
            if not data:
                raise BadUpload("the file is empty")
            self._choose(data)
            if self._inflater is None:
                return self._decode(data, final=True)
            self._inflater.push(data)
        if self._inflater is None:
            return self._decode(b"", final=True)
        texts = []
        while self._inflater.backlog:
            texts.append(self.more())
        texts.append(self._decode(self._inflater.finish(), final=True))
        return "".join(texts)

    def _choose(self, head: bytes) -> None:
        if head.startswith(_GZIP_MAGIC):
            max_bytes, max_ratio, slice_bytes = self._limits
            self._inflater = GzipInflater(
                max_bytes=max_bytes, max_ratio=max_ratio, slice_bytes=slice_bytes
            )
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()

    def _decode(self, data: bytes, *, final: bool) -> str:
        assert self._decoder is not None
        if self._decoded_bytes == 0 and data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            self._decoder = codecs.getincrementaldecoder("utf-16")()
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise BadUpload(
                f"the file is not UTF-8 text (invalid byte at offset "
                f"{self._decoded_bytes + exc.start}); save it as 'CSV UTF-8'"
            ) from None
        self._decoded_bytes += len(data)
        return text


class _NeedMore(Exception):
    """The csv parser asked for a line that has not arrived yet."""


class _RecordTooLarge(Exception):
    pass


class _LineFeed:
    """The line iterator csv.reader pulls from. It remembers the lines of the record being
    parsed so that, when the record is cut at a chunk boundary, they can be handed out again
    once more text has arrived (csv.reader starts each record afresh)."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque()
        self.taken: list[str] = []
        self.taken_chars = 0
        self.waiting_parity: int | None = None
        """After a cut record: the parity of quotes in the lines waiting. Parsing is retried
        only once it is even (the record is then probably complete), so a long record is not
        re-parsed for every chunk that extends it."""
        self.waiting_chars = 0

    def push(self, line: str) -> None:
        self.lines.append(line)
        if self.waiting_parity is not None:
            self.waiting_parity = (self.waiting_parity + line.count('"')) % 2
            self.waiting_chars += len(line)

    def worth_parsing(self) -> bool:
        return (self.waiting_parity in (None, 0) or self.waiting_chars > MAX_RECORD_CHARS) and bool(
            self.lines
        )

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if not self.lines:
            raise _NeedMore
        line = self.lines.popleft()
        self.taken.append(line)
        self.taken_chars += len(line)
        if self.taken_chars > MAX_RECORD_CHARS:
            raise _RecordTooLarge
        return line

    def record_done(self) -> None:
        self.taken.clear()
        self.taken_chars = 0
        self.waiting_parity = None
        self.waiting_chars = 0

    def rewind(self) -> None:
        self.lines.extendleft(reversed(self.taken))
        self.record_done()
        self.waiting_parity = sum(line.count('"') for line in self.lines) % 2
        self.waiting_chars = sum(len(line) for line in self.lines)

    def clear(self) -> None:
        self.lines.clear()
        self.record_done()


class CsvRecords:
    """CSV records from text chunks: any of DELIMITERS (guessed from the header line unless
    given), quoted cells with delimiters, quotes and line breaks, CRLF or LF line ends.

    A record that cannot be parsed (larger than MAX_RECORD_CHARS, a cell over csv's limit, a
    quote never closed) becomes a `Record` with a `problem`; reading goes on after it. To find
    the end of such a record without holding it, quotes are counted: a line break ends the
    record once the quotes seen are balanced.
    """

    def __init__(self, *, delimiter: str | None = None) -> None:
        self._delimiter = delimiter
        self._partial = ""
        self._feed = _LineFeed()
        self._reader: Iterator[list[str]] | None = None
        self._row = 0  # rows started so far (header = 1)
        self._skipping: tuple[int, str] | None = None  # (open quotes parity, reason)

    @property
    def delimiter(self) -> str | None:
        return self._delimiter

    def feed(self, text: str) -> list[Record]:
        data = self._partial + text
        parts = data.split("\n")
        self._partial = parts.pop()
        records = self._lines([part + "\n" for part in parts])
        if len(self._partial) > MAX_RECORD_CHARS:
            # A line with no line break in sight: give up on its record now, keep counting
            # quotes to find where it ends.
            quotes = self._partial.count('"')
            if self._skipping is None:
                self._row += 1
                quotes += sum(line.count('"') for line in self._feed.lines)
                self._feed.clear()
                self._skipping = (quotes % 2, self._too_large())
            else:
                self._skipping = ((self._skipping[0] + quotes) % 2, self._skipping[1])
            self._partial = ""
        return records

    def finish(self) -> list[Record]:
        records = self.feed("\n") if self._partial else []
        self._feed.waiting_parity = None  # no more text: whatever waits is parsed now
        records.extend(self._parse())
        if self._skipping is not None:
            records.append(Record(self._row, None, self._skipping[1]))
            self._skipping = None
        elif self._feed.lines:
            self._row += 1
            self._feed.clear()
            records.append(Record(self._row, None, "a quoted cell is never closed"))
        return records

    def _too_large(self) -> str:
        return f"row longer than {MAX_RECORD_CHARS:,} characters"

    def _lines(self, lines: list[str]) -> list[Record]:
        records: list[Record] = []
        for line in lines:
            if self._skipping is not None:
                parity, reason = self._skipping
                parity = (parity + line.count('"')) % 2
                if parity == 0 and line.endswith("\n"):
                    records.append(Record(self._row, None, reason))
                    self._skipping = None
                else:
                    self._skipping = (parity, reason)
                continue
            self._feed.push(line)
            if self._reader is None:
                self._start(line)
        records.extend(self._parse())
        return records

    def _start(self, header_line: str) -> None:
        if self._delimiter is None:
            counts = {d: header_line.count(d) for d in DELIMITERS}
            best = max(DELIMITERS, key=lambda d: counts[d])
            self._delimiter = best if counts[best] else ","
        self._reader = csv.reader(self._feed, delimiter=self._delimiter)

    def _parse(self) -> list[Record]:
        records: list[Record] = []
        if self._reader is None:
            return records
        while self._feed.worth_parsing() and self._skipping is None:
            try:
                cells = next(self._reader)
            except _NeedMore:
                self._feed.rewind()
                break
            except (_RecordTooLarge, csv.Error) as exc:
                reason = self._too_large() if isinstance(exc, _RecordTooLarge) else _csv_reason(exc)
                self._row += 1
                quotes = sum(line.count('"') for line in self._feed.taken)
                self._feed.record_done()
                if quotes % 2 == 0:
                    records.append(Record(self._row, None, reason))
                else:
                    self._skipping = (1, reason)
                    pending = list(self._feed.lines)
                    self._feed.clear()
                    records.extend(self._lines(pending))
                break
            self._feed.record_done()
            self._row += 1
            records.append(Record(self._row, cells))
        return records


def _csv_reason(exc: Exception) -> str:
    if "field larger than field limit" in str(exc):
        return f"a cell longer than {csv.field_size_limit():,} characters"
    return f"not readable as CSV: {exc}"


class NdjsonRecords:
    """JSON objects, one per line (NDJSON / JSON Lines); blank lines are skipped but counted.
    A line that is not a JSON object becomes a `Record` with a `problem`."""

    def __init__(self) -> None:
        self._partial = ""
        self._row = 0
        self._skipping = False

    def feed(self, text: str) -> list[Record]:
        data = self._partial + text
        lines = data.split("\n")
        self._partial = lines.pop()
        records = [record for line in lines if (record := self._line(line)) is not None]
        if len(self._partial) > MAX_RECORD_CHARS and not self._skipping:
            self._row += 1
            self._skipping = True
            records.append(Record(self._row, None, f"line longer than {MAX_RECORD_CHARS:,}"))
            self._partial = ""
        elif self._skipping:
            self._partial = ""
        return records

    def finish(self) -> list[Record]:
        if self._partial and not self._skipping:
            record = self._line(self._partial)
            self._partial = ""
            return [record] if record is not None else []
        return []

    def _line(self, line: str) -> Record | None:
        if self._skipping:  # the tail of a line already reported as too long
            self._skipping = False
            return None
        self._row += 1
        if not line.strip():
            return Record(self._row, [])
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return Record(self._row, None, f"not valid JSON: {exc}")
        if not isinstance(value, dict):
            return Record(self._row, None, f"a JSON {type(value).__name__}, not an object")
        return Record(self._row, value)
