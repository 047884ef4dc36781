"""The vLLM server's stand-in for the process kubelet: what the seed's ServingRuntime image would do with
the directory mounted at ``--model``, decided by the real ``safetensors`` library, not by modelpvc.

It finds the files vLLM's DefaultModelLoader would (vllm/model_executor/model_loader/default_loader.py,
``_prepare_weights``): the config it reads (config.json, or params.json with --config-format/--load-format
mistral), the weight files at the top level (*.safetensors, else *.bin, else *.pt; consolidated*.safetensors
in Mistral mode) filtered by the index when there is one, and a tokenizer unless --tokenizer or
--skip-tokenizer-init says otherwise. Every safetensors file is opened with ``safetensors.safe_open``, which
validates its header and length, and every tensor's entry is read (not its data: numpy, the framework
installable without torch, has no bfloat16). Then it serves ``/health`` (200) on ``--port`` until stopped;
a load error is printed the way vLLM prints it and the process exits 1, so the kubelet's restarts give
CrashLoopBackOff.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _load_error(model: Path, args: argparse.Namespace) -> str | None:
    from safetensors import safe_open

    if not model.is_dir():
        return f"FileNotFoundError: {model} does not exist"
    mistral = args.load_format == "mistral"
    config = "params.json" if mistral or args.config_format == "mistral" else "config.json"
    try:
        json.loads((model / config).read_bytes())
    except FileNotFoundError:
        return f"OSError: {model} does not appear to have a file named {config}"
    except ValueError:
        return f"json.decoder.JSONDecodeError: {config} is not valid JSON"
    top = sorted(p for p in model.iterdir() if p.is_file())
    if mistral:
        files = [p for p in top if p.name.startswith("consolidated") and p.suffix == ".safetensors"]
        index = model / "consolidated.safetensors.index.json"
    else:
        files = ([p for p in top if p.suffix == ".safetensors"] or [p for p in top if p.suffix == ".bin"]
                 or [p for p in top if p.suffix == ".pt"])
        index = model / "model.safetensors.index.json"
    if index.exists() and files and files[0].suffix == ".safetensors":
        try:
            named = set(json.loads(index.read_bytes())["weight_map"].values())
        except (ValueError, KeyError, TypeError):
            return f"{index.name}: invalid index"
        missing = sorted(named - {p.name for p in files})
        if missing:
            return f"FileNotFoundError: {model}/{missing[0]} (named by {index.name}) not found"
        files = [p for p in files if p.name in named]
    if not files:
        return f"RuntimeError: Cannot find any model weights with `{model}`"
    for p in files:
        if p.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(p), framework="numpy") as f:  # parses the header, checks the file's length
                for key in f.keys():  # noqa: SIM118  (a safe_open handle, not a dict)
                    f.get_slice(key).get_shape()  # every tensor's entry; numpy has no bfloat16 to read data into
        except Exception as e:  # the library's own error types, printed as vLLM's log shows them
            return f"safetensors_rust.SafetensorError: {p.name}: {e}"
    if args.tokenizer is None and not args.skip_tokenizer_init and \
            not any((model / t).exists() for t in ("tokenizer.json", "tokenizer.model", "tekken.json")):
        return f"OSError: Can't load tokenizer for '{model}'"
    return None


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vllm serve")
    p.add_argument("--port", type=int, default=8000)
    # vLLM's own choices (vllm/engine/arg_utils.py): a wrong value exits 2 before anything loads.
    p.add_argument("--dtype", choices=["auto", "half", "float16", "bfloat16", "float", "float32"])
    p.add_argument("--model", default="/mnt/models")
    p.add_argument("--load-format")
    p.add_argument("--config-format")
    p.add_argument("--tokenizer")
    p.add_argument("--skip-tokenizer-init", action="store_true")
    args, _rest = p.parse_known_args(argv)
    return args


def load_error(model: Path, argv: list[str]) -> str | None:
    """None when the server would load ``model`` given its command-line arguments, else why not."""
    return _load_error(model, _args(argv))


def main(argv: list[str]) -> int:
    args = _args(argv)
    print("INFO Starting vLLM API server (process-kubelet stand-in)", flush=True)
    err = _load_error(Path(args.model), args)
    if err is not None:
        print(f"ERROR Failed to load model from {args.model}: {err}", flush=True)
        return 1

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path in ("/health", "/v1/models") else 404
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Health)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print("INFO Application startup complete.", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
