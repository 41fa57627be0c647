"""JSON Lines output of batch detection: append-only, flushed per partition, resumable.

One line per image::

    {"image": "<key>", "boxes": [[x, y, w, h, score], ...]}
    {"image": "<key>", "error": "cannot decode image ..."}

Lines are only ever appended, a partition's lines in one write followed by a flush
and an ``fsync``, so a killed run leaves every finished partition on disk and at
worst one torn last line. :class:`JsonlOutput` opened with ``resume=True`` cuts a
torn tail off and reports the images already written, which a resumed run skips.
:func:`jsonl_to_json` turns the file into the older single JSON
``{"<key>": [[x, y, w, h, score], ...]}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

__all__ = ["JsonlOutput", "jsonl_to_json", "read_jsonl"]


def _parse(line: bytes, path: Path, lineno: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("image"), str) \
            or ("boxes" not in record and "error" not in record):
        raise ValueError(f"{path}:{lineno}: not a batch-detection record: {line[:80]!r}")
    return record


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete record of a batch-detection JSON Lines file, in file order.

    A torn last line (no final newline: a run killed while writing) is ignored.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For a complete line that is not a record (file and line number in the message).
    """
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")[:-1]  # the part after the last newline is torn or empty
    return [_parse(line, path, i) for i, line in enumerate(lines, 1) if line.strip()]


class JsonlOutput:
    """Append-only writer of batch-detection records.

    Parameters
    ----------
    path : path
        The JSON Lines file.
    resume : bool
        Continue an existing file: a torn last line is cut off and
        :attr:`done` holds the keys already written. Without it an existing
        non-empty file is an error (nothing is overwritten by accident).
    overwrite : bool
        Start an existing file afresh instead (for a caller's own scratch file).

    Attributes
    ----------
    done : set of str
        Image keys in the file (from a resumed file, then every record written).

    Raises
    ------
    ValueError
        If the file exists, is not empty, and neither ``resume`` nor ``overwrite``
        is set; or if ``resume`` finds a line that is not a record.
    """

    def __init__(self, path: str | os.PathLike, resume: bool = False,
                 overwrite: bool = False) -> None:
        self.path = Path(path)
        self.done: set[str] = set()
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if exists and resume:
            self.done = {r["image"] for r in read_jsonl(self.path)}
            self._cut_torn_tail()
        elif exists and not overwrite:
            raise ValueError(f"{self.path} already exists: continue it with resume "
                             "(vj-detect --resume) or remove it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab" if resume else "wb")  # noqa: SIM115 (closed in close)

    def _cut_torn_tail(self) -> None:
        size = self.path.stat().st_size
        with open(self.path, "rb+") as fh:
            # Find the last newline; anything after it is a torn record.
            pos = size
            while pos > 0:
                step = min(65536, pos)
                fh.seek(pos - step)
                chunk = fh.read(step)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    pos = pos - step + nl + 1
                    break
                pos -= step
            if pos < size:
                fh.truncate(pos)

    def write(self, records: Iterable[dict[str, Any]]) -> int:
        """Append the records whose image is not written yet; flush them to disk.

        Returns
        -------
        int
            How many records were written (duplicates of written images are dropped).
        """
        lines = []
        for record in records:
            key = record["image"]
            if key in self.done:
                continue
            self.done.add(key)
            lines.append(json.dumps(record, separators=(",", ":")) + "\n")
        if lines:
            self._fh.write("".join(lines).encode("utf-8"))
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return len(lines)

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __enter__(self) -> JsonlOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def jsonl_to_json(src: str | os.PathLike, dst: str | os.PathLike) -> dict[str, Any]:
    """Write the single-JSON form ``{"<key>": [[x, y, w, h, score], ...]}`` (atomically).

    Images recorded as errors are left out, as the single JSON has always done.

    Returns
    -------
    dict
        ``{"images": n, "boxes": n, "errors": n}`` of the converted file.
    """
    results: dict[str, list] = {}
    errors = 0
    for record in read_jsonl(src):
        if "boxes" in record:
            results[record["image"]] = record["boxes"]
        else:
            errors += 1
    ordered = {k: results[k] for k in sorted(results)}
    atomic_write_text(dst, json.dumps(ordered, indent=1) + "\n")
    return {"images": len(ordered), "boxes": sum(len(v) for v in ordered.values()),
            "errors": errors}
