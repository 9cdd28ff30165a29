"""Writing a pack's files: each created once in the private output directory, hashed as it
is written, so that the manifest lists exactly the bytes on disk."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

import orjson

from otaudit.outdir import OutputDir
from otaudit.query import json_cell
from otaudit.textsafety import spreadsheet_row


class PackFile:
    """One new file of the pack, written once, hashed as it is written."""

    def __init__(self, out: OutputDir, name: str) -> None:
        self.name = name
        self._file: BinaryIO = out.create(name)
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: str | bytes) -> int:
        """Append ``data`` (text as UTF-8)."""
        raw = data.encode() if isinstance(data, str) else data
        self._file.write(raw)
        self._sha.update(raw)
        self.size += len(raw)
        return len(data)

    def close(self) -> tuple[str, int]:
        """Flush to disk; the file's SHA-256 (hex) and size."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._sha.hexdigest(), self.size


class PackWriter:
    """The pack's output directory and the hash of every file written into it."""

    def __init__(self, out: OutputDir) -> None:
        self.out = out
        self.hashes: dict[str, tuple[str, int]] = {}
        self._dirs: set[str] = set()

    def directory(self, name: str) -> None:
        """Make the subdirectory ``name`` (and its parents) unless made already."""
        parts = name.split("/")
        for i in range(1, len(parts) + 1):
            path = "/".join(parts[:i])
            if path not in self._dirs:
                self.out.make_dir(path)
                self._dirs.add(path)

    def open(self, name: str) -> PackFile:
        """A new file ``name`` (a path inside the pack); close it with :meth:`done`."""
        if "/" in name:
            self.directory(name.rsplit("/", 1)[0])
        return PackFile(self.out, name)

    def done(self, file: PackFile) -> None:
        """Close ``file`` and note its hash for the manifest."""
        self.hashes[file.name] = file.close()

    def write(self, name: str, data: str | bytes) -> None:
        """A whole file at once."""
        file = self.open(name)
        file.write(data)
        self.done(file)

    def json(self, name: str, document: Any) -> None:
        """A JSON file, indented, keys in the given order."""
        self.write(name, orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


class TableFiles:
    """A table written as CSV and JSONL side by side, in the forms of ``otaudit sql
    --format csv`` and ``--format jsonl`` (bytes as base64, timestamps RFC 3339, CSV cells
    safe to open in a spreadsheet)."""

    def __init__(self, writer: PackWriter, stem: str, columns: Sequence[str]) -> None:
        self.writer = writer
        self.columns = list(columns)
        self.csv_file = writer.open(f"{stem}.csv")
        self.jsonl_file = writer.open(f"{stem}.jsonl")
        self._csv = csv.writer(self.csv_file, lineterminator="\n")
        self._csv.writerow(self.columns)
        self.rows = 0

    def add(self, row: Sequence[Any]) -> None:
        """One row, in ``columns`` order."""
        cells = [json_cell(v) for v in row]
        self._csv.writerow(spreadsheet_row(cells))
        self.jsonl_file.write(orjson.dumps(dict(zip(self.columns, cells, strict=True))) + b"\n")
        self.rows += 1

    def add_all(self, rows: Iterable[Sequence[Any]]) -> None:
        """Every row of ``rows``."""
        for row in rows:
            self.add(row)

    def close(self) -> int:
        """Close both files; the number of rows written."""
        self.writer.done(self.csv_file)
        self.writer.done(self.jsonl_file)
        return self.rows
