"""argparse types for sizes and rates: one parser (model.sizing) for every flag, a usage error (exit 2)
naming the flag for anything else, and Kubernetes quantities normalised where they are written."""

from __future__ import annotations

import argparse

from modelpvc.model import sizing


def size_bytes(text: str) -> int:
    """--model-bytes, --threshold, --node-ephemeral: "48GB", "45Gi", "1.5TiB", "123456"."""
    try:
        return sizing.parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def quantity(text: str) -> str:
    """--memory, --size, --ephemeral: a size as the API wants it ("80GB" becomes "80G"); "auto" passes."""
    if text == "auto":
        return text
    try:
        return sizing.to_quantity(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def rate(text: str) -> str:
    """--bandwidth: checked here, kept as written for the report ("125MiB/s", "1Gbps")."""
    try:
        sizing.parse_bandwidth(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate: e.g. 125MiB/s, 500MB/s, 1Gbps") from e
    return text
