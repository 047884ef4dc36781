"""``modelpvc demo``: the whole flow on one machine — an embedded S3 server on loopback, a synthetic
model laid out like the runbook's (HF shards + tokenizer), a local directory as the "PVC"."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from modelpvc.model.synthetic import ModelSpec, generate_model, tree_bytes


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the whole flow locally: embedded S3 server, a directory as the PVC",
                       description=__doc__)
    p.add_argument("--workdir", type=Path, default=Path("demo"), help="where the bucket and the PVC live")
    p.add_argument("--size-mb", type=int, default=1024, help="weights size of the synthetic model (default 1024)")
    p.set_defaults(run=run)


def _step(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def _cli(args: list[str], env: dict[str, str]) -> int:
    cmd = [sys.executable, "-m", "modelpvc", *args]
    print("$ modelpvc " + " ".join(args), flush=True)
    return subprocess.run(cmd, env=env, check=False).returncode


def _cluster_demo(src: str, srv: Any, work: Path, env: dict[str, str]) -> bool:
    """populate and deploy against the tests' fake API server, when this is a source checkout."""
    sys.path.insert(0, str(Path.cwd()))
    try:
        # Looked up by name: the product does not depend on its tests; a checkout simply has them.
        fakeapi = importlib.import_module("tests.kube.fakeapi")
    except ImportError:
        return False
    cluster = fakeapi.FakeCluster(work / "cluster").start()
    try:
        ns = "private-ai-demo"
        cluster.add_openshift_namespace(ns)
        runtime = Path.cwd() / "tests" / "fixtures" / "seed" / "servingruntime-vllm-cuda.yaml"
        cluster.put("servingruntimes", ns, yaml.safe_load(runtime.read_text()))
        cluster.add_secret(ns, "s3-credentials-kserve", {"accesskey": srv.access_key, "secretkey": srv.secret_key,
                                                         "AWS_S3_ENDPOINT": srv.endpoint})
        kenv = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        kenv["KUBECONFIG"] = str(cluster.kubeconfig(work / "kubeconfig", ns))
        _step("populate against a fake Kubernetes API server (a test double: Job pods are local processes)")
        if _cli(["populate", "-n", ns, "--pvc", "mistral-24b-pvc", "--create-pvc", "--source", src,
                 "--secret", "s3-credentials-kserve"], kenv):
            return True
        _step("deploy the InferenceService onto the verified claim and wait for Ready")
        _cli(["deploy", "-n", ns, "--name", "mistral-24b", "--pvc", "mistral-24b-pvc", "--runtime",
              "vllm-cuda-runtime", "--gpus", "1", "--arg=--max-model-len=32768"], kenv)
        _step("doctor: anything wrong?")
        _cli(["doctor", "-n", ns, "--isvc", "mistral-24b"], kenv)
    finally:
        cluster.stop()
    return True


def run(args: argparse.Namespace) -> int:
    from modelpvc.devtools.s3server import RcloneS3  # dev extra: only the demo needs rclone

    work: Path = args.workdir.resolve()
    bucket_root = work / "s3"
    model_dir = bucket_root / "llm-models" / "Mistral-Small-24B-Instruct" / "full-fp16"
    pvc = work / "pvc"
    _step(f"synthetic model: {args.size_mb} MB of safetensors shards + index, config, tokenizer")
    if not (model_dir / "config.json").exists():
        generate_model(model_dir, ModelSpec(total_bytes=args.size_mb * 1024 * 1024, shards=4))
    for p in sorted(model_dir.iterdir()):
        print(f"  {p.name:40} {p.stat().st_size:>12,} bytes")
    shutil.rmtree(pvc, ignore_errors=True)
    with RcloneS3(bucket_root, log_path=work / "s3-server.log") as srv:
        env = {**os.environ, **srv.env()}
        src = "s3://llm-models/Mistral-Small-24B-Instruct/full-fp16/"
        _step(f"embedded S3 server on {srv.endpoint} (rclone serve s3); the 'PVC' is {pvc}")
        _step("plan: what would be copied (dry run)")
        if _cli(["mirror", src, str(pvc), "--dry-run"], env):
            return 1
        _step("mirror: concurrent ranged GETs, verified against the ETag MD5s, published atomically")
        if _cli(["mirror", src, str(pvc), "--progress", "tty", "-v"], env):
            return 1
        _step("mirror again: the destination is complete, so nothing is fetched")
        if _cli(["mirror", src, str(pvc), "--progress", "none"], env):
            return 1
        _step("a typo in the prefix: exit 3 and the nearest existing prefix")
        rc = _cli(["mirror", src.rstrip("/") + "-typo/", str(work / "elsewhere"), "--progress", "none"], env)
        print(f"(exit code {rc})")
        _step("verify: is the 'PVC' a complete, intact model? (structure + manifest + every digest)")
        if _cli(["verify", str(pvc), "--deep"], env):
            return 1
        _step("plan: sizes, formats, PVC size, serving pattern and time estimates")
        if _cli(["plan", src, "--threshold", "100M"], env):
            return 1
        _step("render: the Kubernetes objects for a GitOps repository (validated offline)")
        rc = _cli(["render", "--name", "mistral-24b", "--namespace", "private-ai-demo", "--source", src,
                   "--endpoint-url", "http://minio.model-storage.svc:9000", "--secret", "s3-credentials-kserve",
                   "--pvc", "mistral-24b-pvc", "--size", "auto", "--model-bytes", str(tree_bytes(model_dir)),
                   "--storage-class", "gp3-csi", "--runtime",
                   "vllm-cuda-runtime", "--gpus", "4", "--arg=--max-model-len=32768", "-o", str(work / "manifests"),
                   "--validate"], env)
        if rc:
            return 1
        if not _cluster_demo(src, srv, work, env):
            print("\n(the fake Kubernetes API server lives in the source tree's tests/; run `make demo` from a "
                  "checkout to see populate and deploy against it)")
    print(f"  {pvc}/.modelpvc/manifest.json records source, revision, files, sizes, ETags and digests;")
    print("  a directory without it is incomplete by definition.")
    print("\ndemo complete")
    return 0
