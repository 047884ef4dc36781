"""The file-selection options ``plan``, ``mirror`` and ``import`` share.

Its own module so that ``mirror`` does not import ``plan``'s header reading and sizing at start-up (the
no-op re-run's budget is 0.3 s, most of it imports: docs/decisions.md §14)."""

from __future__ import annotations

import argparse


def add_selection_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("file selection")
    g.add_argument("--select", choices=["auto", "all"], default="auto",
                   help="auto (default): copy the one weight copy the serving loader reads and every non-weight "
                        "file; skip duplicate copies (original/, consolidated*.safetensors beside HF shards, .bin "
                        "beside .safetensors, GGUF) and training state; all: copy everything")
    add_loader_argument(g)
    g.add_argument("--include", action="append", default=[], metavar="GLOB", help="copy only matching paths")
    g.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="leave matching paths out")


def add_loader_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--for", dest="loader", choices=["vllm", "vllm-mistral"], default="vllm",
                   help="the loader that will serve it: vllm (default: HF safetensors first) or vllm-mistral "
                        "(--load-format mistral: consolidated*.safetensors, params.json, tekken.json); a problem "
                        "in weights it does not read is a warning")
