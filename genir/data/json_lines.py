"""One reader of JSON-lines files, gzip-compressed or plain, for every snapshot and corpus format here (Debian
descriptions and bundles, clip-art captions, BEIR corpora and queries).

:func:`json_lines` yields ``(line number, object)`` for each non-blank line. Whether the file is gzip is told by its
first two bytes, not its name. Every problem raises :class:`~genir.errors.DatasetError` naming the file and, where
there is one, the line:
- a missing file;
- a truncated or corrupt archive;
- bytes that are not UTF-8;
- malformed JSON;
- a line that is not a JSON object.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

from genir.errors import DatasetError

GZIP_MAGIC = b"\x1f\x8b"


def json_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(1-based line number, object) for each non-blank line of ``path``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == GZIP_MAGIC
    lineno = 0
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: not UTF-8 ({exc.reason})") from None
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: malformed JSON ({exc.msg}, column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise DatasetError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                yield lineno, obj
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: cannot read past line {lineno} ({exc})") from None
