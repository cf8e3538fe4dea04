"""`leadflow-import upload FILE --list NAME`: stream a lead list to ingest with a progress bar.

The file is sent as it is read (never loaded whole), so any size works; the bar counts bytes
sent. The ingest answers after the last lead is acknowledged by the broker; its report is
printed as JSON, with a count of rejected rows and of rows kept without a bad value (a phone,
a country: the report's `warnings`) on stderr. Exit codes: 0 every row imported (warnings
included), 2 imported but some rows were rejected (the report lists them), 1 the import failed
(nothing or only part published: run it again; the leads already published are not
duplicated).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs pinned; one call site

_CHUNK = 64 * 1024
_TYPES = {
    ".csv": "text/csv",
    ".tsv": "text/csv",
    ".txt": "text/csv",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
}


def _content_type(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return _TYPES.get(suffixes[-1] if suffixes else "", "text/csv")


def _chunks(file: BinaryIO, bar: Any) -> Iterator[bytes]:
    while chunk := file.read(_CHUNK):
        bar.update(len(chunk))
        yield chunk


def upload(
    path: Path,
    *,
    list_name: str,
    url: str,
    write_key: str,
    mapping: str | None = None,
    delimiter: str | None = None,
    file_format: str | None = None,
    import_id: str | None = None,
    show_progress: bool = True,
) -> tuple[int, dict[str, Any]]:
    """Upload one file; return the HTTP status and the answer's JSON."""
    params = {"list": list_name}
    if mapping is not None:
        params["mapping"] = mapping
    if delimiter is not None:
        params["delimiter"] = delimiter
    if file_format is not None:
        params["format"] = file_format
    headers = {"Content-Type": _content_type(path)}
    if import_id is not None:
        headers["X-Import-Id"] = import_id
    size = path.stat().st_size
    # The answer comes only after the whole list is published: allow a long wait for it.
    timeout = httpx.Timeout(30.0, read=3600.0)
    with (
        path.open("rb") as file,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=f"uploading {path.name}",
            disable=not show_progress,
        ) as bar,
        httpx.Client(base_url=url, auth=(write_key, ""), timeout=timeout) as client,
    ):
        response = client.post(
            "/v1/leads/import", params=params, headers=headers, content=_chunks(file, bar)
        )
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {"success": False, "error": response.text[:500]}
    return response.status_code, body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadflow-import", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upload", help="upload a CSV or NDJSON lead list")
    up.add_argument("file", type=Path)
    up.add_argument("--list", dest="list_name", required=True, help="the list's name (source)")
    up.add_argument("--url", default="http://127.0.0.1:8000", help="ingest's base URL")
    up.add_argument(
        "--write-key",
        default=os.environ.get("LEADFLOW_WRITE_KEY"),
        help="write key (default: $LEADFLOW_WRITE_KEY)",
    )
    up.add_argument("--mapping", help='JSON object header -> field, e.g. {"Mail": "email"}')
    up.add_argument("--delimiter", help="CSV delimiter (default: guessed from the header)")
    up.add_argument("--format", dest="file_format", choices=("csv", "ndjson"))
    up.add_argument("--import-id", help="an id to follow the import at /v1/leads/import/{id}")
    up.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.write_key:
        parser.error("--write-key (or LEADFLOW_WRITE_KEY) is required")
    if not args.file.is_file():
        parser.error(f"{args.file}: no such file")
    try:
        status, body = upload(
            args.file,
            list_name=args.list_name,
            url=args.url,
            write_key=args.write_key,
            mapping=args.mapping,
            delimiter=args.delimiter,
            file_format=args.file_format,
            import_id=args.import_id,
            show_progress=not args.quiet,
        )
    except httpx.HTTPError as exc:
        print(f"upload failed: {exc!r}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2, ensure_ascii=False))
    if status != 200:
        print(f"import failed (HTTP {status}): {body.get('error')}", file=sys.stderr)
        return 1
    if body.get("warned"):
        print(f"{body['warned']} rows kept with values dropped (see 'warnings')", file=sys.stderr)
    if body.get("rejected"):
        print(f"{body['rejected']} rows rejected (see 'rejections')", file=sys.stderr)
        return 2
    return 0
