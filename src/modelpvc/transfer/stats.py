"""What a transfer did, for the summary: bytes, files, retries, where the time went."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunStats:
    bytes_fetched: int = 0
    files_published: int = 0
    adopted_files: int = 0
    adopted_bytes: int = 0
    retries: int = 0
    refetched_files: list[str] = field(default_factory=list)
    seconds_waiting_source: float = 0.0
    seconds_writing: float = 0.0  # writing and hashing, including seconds_waiting_disk
    seconds_waiting_disk: float = 0.0  # waiting for a write-behind buffer the disk had not given back
    direct_files: int = 0  # published files whose aligned writes went around the page cache
    bytes_hashed_again: int = 0  # hashed from the file, not from the receive buffer (ranges out of order, lane files)
