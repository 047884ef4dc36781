"""render: the seed scenario's intent without its defects; everything validates; restricted pods."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from modelpvc.cli.main import main
from modelpvc.kube.podsecurity import pod_spec_of, violations
from modelpvc.kube.validate import load_crd_schemas, validate_objects

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed"  # the runbook's reference manifests
SEED_ARGS = ["render", "--name", "mistral-24b", "--namespace", "private-ai-demo", "--source",
             "s3://llm-models/Mistral-Small-24B-Instruct/full-fp16/", "--endpoint-url",
             "http://minio.model-storage.svc:9000", "--secret", "s3-credentials-kserve", "--pvc", "mistral-24b-pvc",
             "--size", "120Gi", "--storage-class", "gp3-csi", "--runtime", "vllm-cuda-runtime", "--gpus", "4",
             "--arg=--dtype=bfloat16", "--arg=--tensor-parallel-size=4", "--arg=--max-model-len=32768",
             "--kinds", "pvc,job,isvc,verify-job"]


def render(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, dict]:  # type: ignore[type-arg]
    assert main([*SEED_ARGS, *extra]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    return {d["kind"] + ("-verify" if d["metadata"]["name"].endswith("-verify") else ""): d for d in docs}


def seed(name: str) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((SEED / name).read_text())


def test_seed_scenario_matches_the_reference_intent(capsys):
    objs = render(capsys)
    ref_isvc, ref_pvc, ref_job = (seed("inferenceservice-mistral-24b.yaml"), seed("pvc-mistral-24b.yaml"),
                                  seed("job-mirror-full-model.yaml"))
    isvc = objs["InferenceService"]
    assert isvc["metadata"]["namespace"] == ref_isvc["metadata"]["namespace"]
    model, ref_model = isvc["spec"]["predictor"]["model"], ref_isvc["spec"]["predictor"]["model"]
    assert model["storageUri"] == ref_model["storageUri"] == "pvc://mistral-24b-pvc/"
    assert model["runtime"] == ref_model["runtime"] and model["modelFormat"] == {"name": "vLLM"}
    assert model["resources"]["limits"]["nvidia.com/gpu"] == ref_model["resources"]["limits"]["nvidia.com/gpu"]
    assert {"--dtype=bfloat16", "--tensor-parallel-size=4", "--max-model-len=32768"} <= set(model["args"])
    # Defect fixed: a PVC-backed predictor needs no 80Gi of ephemeral storage.
    assert "ephemeral-storage" not in str(model["resources"])
    assert "ephemeral-storage" in str(ref_model["resources"])
    pvc = objs["PersistentVolumeClaim"]
    assert pvc["spec"]["resources"] == ref_pvc["spec"]["resources"]
    assert pvc["spec"]["storageClassName"] == ref_pvc["spec"]["storageClassName"]
    job = objs["Job"]
    pod = job["spec"]["template"]["spec"]
    ref_pod = ref_job["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == \
        ref_pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3-credentials-kserve",
                                                                      "key": "AWS_ACCESS_KEY_ID"}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.model-storage.svc:9000"
    assert env["HOME"]["value"] == "/tmp"  # mc's ~/.mc failure cannot happen
    assert pod["containers"][0]["args"][:3] == ["mirror", "s3://llm-models/Mistral-Small-24B-Instruct/full-fp16/",
                                                "/mnt/models"]
    # Defect fixed: no fsGroup copied from another namespace; OpenShift assigns it.
    assert "fsGroup" not in pod["securityContext"] and "fsGroup" in ref_pod["securityContext"]
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400 and job["spec"]["backoffLimit"] == 3
    verify = objs["Job-verify"]["spec"]["template"]["spec"]
    assert verify["volumes"][0]["persistentVolumeClaim"]["readOnly"] is True
    assert verify["containers"][0]["args"] == ["verify", "/mnt/models", "--json", "--require-manifest"]
    waves = [objs[k]["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
             for k in ("PersistentVolumeClaim", "Job", "Job-verify", "InferenceService")]
    assert waves == sorted(waves, key=int)


def test_every_rendered_object_validates_and_every_pod_is_restricted(capsys):
    objs = list(render(capsys, "--fs-group", "1001130000", "--path", "rev/a", "--deployment-mode",
                       "RawDeployment").values())
    assert validate_objects(objs, "1.31", load_crd_schemas([])) == []
    pods = [pod_spec_of(o) for o in objs if pod_spec_of(o) is not None]
    assert len(pods) == 2 and all(violations(p) == [] for p in pods if p is not None)
    job = next(o for o in objs if o["metadata"]["name"] == "mistral-24b-populate")
    assert job["spec"]["template"]["spec"]["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert next(o for o in objs if o["kind"] == "InferenceService")["spec"]["predictor"]["model"]["storageUri"] \
        == "pvc://mistral-24b-pvc/rev/a/"


def test_validate_uses_the_bundled_kserve_crds_and_a_cluster_crd_overrides_them(capsys, tmp_path):
    assert main([*SEED_ARGS, "--validate"]) == 0
    capsys.readouterr()
    # A cluster's CRD (oc get crd ... -o yaml) that forbids what we render wins over the bundled one.
    strict = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
              "spec": {"group": "serving.kserve.io", "names": {"kind": "InferenceService"},
                       "versions": [{"name": "v1beta1", "schema": {"openAPIV3Schema": {
                           "type": "object", "properties": {"spec": {"type": "object", "required": ["explainer"]}}}}}]}}
    crd = tmp_path / "crd.yaml"
    crd.write_text(yaml.safe_dump(strict))
    assert main([*SEED_ARGS, "--validate", "--crd", str(crd)]) == 5
    assert "'explainer' is a required property" in capsys.readouterr().err


def test_validation_catches_real_schema_errors():
    bad_isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": "x"}, "spec": {"predictor": {"model": {"modelFormat": "vLLM"}}}}
    bad_pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x"},
               "spec": {"accessModes": "ReadWriteOnce"}}
    problems = validate_objects([bad_isvc, bad_pvc], "1.31", load_crd_schemas([]))
    assert any(p.startswith("InferenceService/x: spec.predictor.model.modelFormat") for p in problems)
    assert any(p.startswith("PersistentVolumeClaim/x: spec.accessModes") for p in problems)


def test_the_seed_job_fails_the_restricted_profile():
    pod = pod_spec_of(seed("job-mirror-full-model.yaml"))
    assert pod is not None
    v = violations(pod)
    assert "mirror: allowPrivilegeEscalation must be false" in v
    assert "mirror: capabilities must drop ALL" in v
    assert "mirror: runAsNonRoot must be true" in v


def test_restricted_checker_flags_each_rule():
    pod = {"hostNetwork": True, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
           "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "Unconfined"}},
           "containers": [{"name": "c", "securityContext": {"privileged": True, "allowPrivilegeEscalation": False,
                                                            "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]},
                                                            "runAsUser": 0},
                           "ports": [{"containerPort": 80, "hostPort": 80}]}]}
    v = violations(pod)
    for expected in ("hostNetwork must not be set", "volume h uses ['hostPath']", "c: privileged",
                     "c: may only add NET_BIND_SERVICE", "c: runAsUser must not be 0",
                     "c: seccompProfile must be RuntimeDefault or Localhost", "c: hostPort must not be set"):
        assert expected in v


def test_argocd_mode_makes_jobs_sync_hooks_without_ttl(capsys):
    objs = render(capsys, "--gitops", "argocd")
    ann = objs["Job"]["metadata"]["annotations"]
    assert ann["argocd.argoproj.io/hook"] == "Sync"
    assert ann["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert "ttlSecondsAfterFinished" not in objs["Job"]["spec"]


def test_secret_key_names_and_size_auto_from_model_bytes(capsys):
    objs = render(capsys, "--secret-keys", "accesskey,secretkey", "--size", "auto", "--model-bytes", "45G")
    env = {e["name"]: e for e in objs["Job"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "secretkey"
    # Room for two revisions (zero-downtime updates populate the new one beside the served one), +10 %.
    assert objs["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "93Gi"
    assert main([*SEED_ARGS, "--size", "auto", "--model-bytes", "45G"]) == 0
    assert "93Gi for 2 revision(s) of 45.0 GB x 1.1 headroom (room for `update`" in capsys.readouterr().err
    objs = render(capsys, "--size", "auto", "--model-bytes", "45G", "--revisions", "1")
    assert objs["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "47Gi"
    assert objs["Job"]["spec"]["activeDeadlineSeconds"] == int(2 * 45e9 / (50 * 1024 * 1024)) + 600


def test_output_dir_writes_one_file_per_object(tmp_path, capsys):
    assert main([*SEED_ARGS, "-o", str(tmp_path / "out")]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["1-job-mistral-24b-populate.yaml", "1-pvc-mistral-24b-pvc.yaml",
                     "2-verify-job-mistral-24b-verify.yaml", "3-isvc-mistral-24b.yaml"]


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--name", "Mistral_24B", "--name 'Mistral_24B' is not a valid Kubernetes name"),
    ("--size", "120XB", "argument --size: '120XB' is not a size"),
    ("--source", "minio/llm-models/x", "is not an s3:// URI"),
    ("--path", "../escape", "must be a relative directory"),
    ("--secret-keys", "onlyone", "give two names"),
    ("--kinds", "pvc,deployment", "--kinds: unknown ['deployment']"),
])
def test_bad_input_is_a_clear_usage_error_before_anything_is_written(flag, value, message, capsys, tmp_path):
    args = list(SEED_ARGS)
    if flag in args:
        i = args.index(flag)
        args[i + 1] = value
    else:
        args += [flag, value]
    try:
        rc = main([*args, "-o", str(tmp_path / "out")])
    except SystemExit as e:  # argparse's own usage error (sizes are parsed as the flags are read)
        rc = e.code
    assert rc == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert not (tmp_path / "out").exists()


def test_render_from_the_reference_isvc_keeps_every_field_but_the_storage_uri(capsys):
    ref = seed("inferenceservice-mistral-24b.yaml")
    args = ["render", "--isvc-base", str(SEED / "inferenceservice-mistral-24b.yaml"), "--source",
            "s3://llm-models/Mistral-Small-24B-Instruct/full-fp16/", "--secret", "s3-credentials-kserve",
            "--pvc", "mistral-24b-pvc", "--path", "rev1", "--size", "120Gi", "--storage-class", "gp3-csi",
            "--kinds", "pvc,job,verify-job,isvc", "--validate"]
    assert main(args) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    expected = copy.deepcopy(ref)
    expected["spec"]["predictor"]["model"]["storageUri"] = "pvc://mistral-24b-pvc/rev1/"
    assert isvc["spec"] == expected["spec"]
    assert isvc["metadata"]["annotations"] == ref["metadata"]["annotations"]
    assert {**ref["metadata"]["labels"], "modelpvc.io/claim": "mistral-24b-pvc"} == isvc["metadata"]["labels"]
    job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].endswith("-populate"))
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    # No --endpoint-url/--region: a data connection's keys reach the Job (optional, so other secrets work).
    assert env["AWS_S3_ENDPOINT"]["valueFrom"]["secretKeyRef"] == {"name": "s3-credentials-kserve",
                                                                    "key": "AWS_S3_ENDPOINT", "optional": True}
    assert env["AWS_DEFAULT_REGION"]["valueFrom"]["secretKeyRef"]["key"] == "AWS_DEFAULT_REGION"
    # The Job may run where the server runs: it tolerates the GPU nodes' taint.
    assert job["spec"]["template"]["spec"]["tolerations"] == ref["spec"]["predictor"]["tolerations"]
    assert main([*args[:-1], "--region", "us-east-2", "--endpoint-url", "http://minio.model-storage.svc:9000"]) == 0
    job = next(d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "Job")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AWS_DEFAULT_REGION"]["value"] == "us-east-2"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.model-storage.svc:9000"


def test_render_without_a_base_covers_the_common_fields_and_the_dashboard_label(capsys):
    assert main([*SEED_ARGS, "--toleration", "nvidia.com/gpu:NoSchedule", "--node-selector",
                 "node.kubernetes.io/instance-type=g6.12xlarge", "--cpu", "16", "--memory", "80Gi",
                 "--min-replicas", "1", "--max-replicas", "1", "--label", "team=ai", "--annotation",
                 "openshift.io/display-name=Mistral 24B", "--validate"]) == 0
    isvc = next(d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "InferenceService")
    pred = isvc["spec"]["predictor"]
    assert pred["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pred["nodeSelector"] == {"node.kubernetes.io/instance-type": "g6.12xlarge"}
    assert (pred["minReplicas"], pred["maxReplicas"]) == (1, 1)
    assert pred["model"]["resources"]["requests"] == {"nvidia.com/gpu": "4", "cpu": "16", "memory": "80Gi"}
    assert isvc["metadata"]["labels"]["opendatahub.io/dashboard"] == "true"
    assert isvc["metadata"]["labels"]["team"] == "ai"
    assert isvc["metadata"]["annotations"]["openshift.io/display-name"] == "Mistral 24B"


def test_argo_cd_arrangement_pvc_and_populate_job_share_a_wave_and_the_pvc_is_never_pruned(capsys):
    objs = render(capsys, "--gitops", "argocd")
    pvc, job = objs["PersistentVolumeClaim"], objs["Job"]
    wave = "argocd.argoproj.io/sync-wave"
    assert pvc["metadata"]["annotations"][wave] == job["metadata"]["annotations"][wave]
    assert pvc["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "Delete=false,Prune=false"
    affinity = job["spec"]["template"]["spec"]["affinity"]["podAffinity"]
    term = affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["labelSelector"]["matchLabels"] == {"serving.kserve.io/inferenceservice": "mistral-24b"}
    assert "ttlSecondsAfterFinished" not in job["spec"]


def test_import_from_adds_an_import_job_before_the_populate_job_which_waits_for_it(capsys):
    out = main([*SEED_ARGS, "--import-from", "hf://mistralai/Mistral-Small-24B-Instruct-2501@main", "--hub-secret",
                "hf-token", "--gitops", "argocd", "--validate"])
    assert out == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in docs][:2] == ["mistral-24b-import", "mistral-24b-pvc"]
    imp, populate = docs[0], next(d for d in docs if d["metadata"]["name"] == "mistral-24b-populate")
    wave = "argocd.argoproj.io/sync-wave"
    assert int(imp["metadata"]["annotations"][wave]) < int(populate["metadata"]["annotations"][wave])
    assert imp["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "Sync"
    pod = imp["spec"]["template"]["spec"]
    assert violations(pod) == []
    assert all("persistentVolumeClaim" not in v for v in pod["volumes"])  # bytes stream Hub -> bucket
    c = pod["containers"][0]
    assert c["args"][:3] == ["import", "hf://mistralai/Mistral-Small-24B-Instruct-2501@main",
                             "s3://llm-models/Mistral-Small-24B-Instruct/full-fp16/"]
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "HF_TOKEN"}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3-credentials-kserve"
    # The import's part buffers fit its memory limit.
    limit = int(c["resources"]["limits"]["memory"].removesuffix("Mi"))
    assert limit >= int(c["args"][c["args"].index("--memory") + 1]) + 256
    pargs = populate["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--wait-for-import" in pargs


def test_import_from_refuses_what_a_pod_cannot_import(capsys):
    assert main([*SEED_ARGS, "--import-from", "/home/me/models/mistral"]) == 2
    assert "in the cluster only Hugging Face origins can be imported" in capsys.readouterr().err


INIT_ARGS = ["render", "--pattern", "storage-initializer", "--name", "granite-3b", "--namespace", "private-ai-demo",
             "--source", "s3://llm-models/granite-3b/", "--secret", "aws-connection-minio", "--model-bytes", "6.2G",
             "--runtime", "vllm-cuda-runtime", "--gpus", "1", "--validate"]


def test_storage_initializer_pattern_validates_and_the_initializer_is_restricted(capsys):
    assert main(INIT_ARGS) == 0
    docs = {d["kind"]: d for d in yaml.safe_load_all(capsys.readouterr().out)}
    assert set(docs) == {"ClusterStorageContainer", "ServiceAccount", "InferenceService"}
    csc = docs["ClusterStorageContainer"]
    assert csc["spec"]["supportedUriFormats"] == [{"prefix": "s3://"}]
    c = csc["spec"]["container"]
    assert c["command"] == ["modelpvc-storage-initializer"] and "args" not in c  # KServe appends URI, path
    assert violations({"containers": [c]}) == []
    limit = next(e for e in c["env"] if e["name"] == "MODELPVC_EPHEMERAL_LIMIT")["valueFrom"]["resourceFieldRef"]
    assert limit == {"containerName": "kserve-container", "resource": "limits.ephemeral-storage", "divisor": "1"}
    isvc = docs["InferenceService"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["storageUri"] == "s3://llm-models/granite-3b/"
    assert model["resources"]["requests"]["ephemeral-storage"] == "7Gi"  # 6.2 GB x 1.1, rounded up
    assert isvc["spec"]["predictor"]["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    assert docs["ServiceAccount"]["secrets"] == [{"name": "aws-connection-minio"}]


def test_storage_initializer_for_chosen_buckets_only(capsys):
    assert main([*INIT_ARGS, "--initializer-buckets", "llm-models,team-a", "--kinds", "csc"]) == 0
    csc = yaml.safe_load(capsys.readouterr().out)
    import re
    [fmt] = csc["spec"]["supportedUriFormats"]
    rx = re.compile(fmt["regex"])
    assert rx.fullmatch("s3://llm-models/granite-3b/") and rx.fullmatch("s3://team-a/x/y")
    assert not rx.fullmatch("s3://llm-models-old/x") and not rx.fullmatch("gs://llm-models/x")


def test_pvc_pattern_still_needs_a_pvc(capsys):
    args = [a for a in SEED_ARGS if a not in ("--pvc", "mistral-24b-pvc")]
    assert main(args) == 2
    assert "--pvc is needed for the pvc pattern" in capsys.readouterr().err


def test_a_port_forwarded_loopback_endpoint_is_refused_where_it_would_be_baked_into_the_job(capsys):
    args = [a if a != "http://minio.model-storage.svc:9000" else "http://127.0.0.1:9000" for a in SEED_ARGS]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is this machine's loopback address" in err and "AWS_ENDPOINT_URL=http://127.0.0.1:PORT" in err


def test_render_from_a_laptop_without_keys_names_the_offline_flags(capsys, monkeypatch):
    for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(v, raising=False)
    args = [a for a in SEED_ARGS]
    i = args.index("--size")
    del args[i:i + 2]  # --size auto: the source's size is needed
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no S3 credentials" in err and "--model-bytes" in err and "render offline" in err


def test_rendered_files_for_plain_oc_apply_say_the_order(capsys):
    render(capsys)  # the seed's kinds, no --gitops
    assert main(SEED_ARGS) == 0
    err = capsys.readouterr().err
    assert "outside Argo CD apply these in order" in err and "modelpvc populate" in err
    assert main([*SEED_ARGS, "--gitops", "argocd"]) == 0
    assert "outside Argo CD" not in capsys.readouterr().err


def _gitops_dir(tmp_path: Path, name: str, pvc: str) -> Path:
    out = tmp_path / name
    args = [a if a != "mistral-24b-pvc" else pvc for a in SEED_ARGS[:-2]]  # the default kinds under GitOps
    args[args.index("--name") + 1] = name
    assert main([*args, "--gitops", "argocd", "-o", str(out), "--validate"]) == 0
    return out


def _args(out: Path) -> dict[str, list[str]]:
    docs = [yaml.safe_load(p.read_text()) for p in sorted(out.iterdir())]
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["args"]
            for d in docs if d["kind"] == "Job"}


def test_gitops_hooks_never_rewrite_the_served_directory_and_collect_after_the_sync(tmp_path, capsys):
    out = _gitops_dir(tmp_path, "mistral-24b", "mistral-24b-pvc")
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        "1-job-mistral-24b-populate.yaml", "1-pvc-mistral-24b-pvc.yaml", "2-verify-job-mistral-24b-verify.yaml",
        "3-isvc-mistral-24b.yaml", "4-gc-job-mistral-24b-gc.yaml"]
    args = _args(out)
    assert args["mistral-24b-populate"][:3] == ["mirror", "s3://llm-models/Mistral-Small-24B-Instruct/full-fp16/",
                                                "/mnt/models"]
    assert "--revision-root=/mnt/models" in args["mistral-24b-populate"]
    assert args["mistral-24b-verify"] == ["verify", "/mnt/models", "--json", "--require-manifest",
                                          "--revision-root=/mnt/models"]
    assert args["mistral-24b-gc"] == ["gc", "/mnt/models", "--keep=/mnt/models", "--yes"]
    gc = yaml.safe_load((out / "4-gc-job-mistral-24b-gc.yaml").read_text())
    assert gc["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PostSync"
    pod = gc["spec"]["template"]["spec"]
    assert violations(pod) == []
    assert not any("AWS" in e["name"] for e in pod["containers"][0]["env"])  # removing files needs no S3 keys
    assert main([*SEED_ARGS, "--kinds", "gc-job"]) == 2
    assert "the gc Job is a GitOps hook" in capsys.readouterr().err


def test_update_gitops_points_the_inference_service_and_its_hooks_at_the_new_revision(tmp_path):
    from modelpvc.core.errors import ConfigError
    from modelpvc.kube.gitops import Served, write_served

    out = _gitops_dir(tmp_path, "mistral-24b", "mistral-24b-pvc")
    other = _gitops_dir(tmp_path, "granite", "granite-pvc")  # another model's hooks, same served path
    for p in other.iterdir():
        p.rename(out / p.name)
    isvc = out / "3-isvc-mistral-24b.yaml"
    isvc.write_text("# served by modelpvc\n" + isvc.read_text())
    before_other = {p.name: p.read_text() for p in out.iterdir() if "granite" in p.name}
    old = Served("mistral-24b", "mistral-24b-pvc", "pvc://mistral-24b-pvc/", "/mnt/models")
    new = Served("mistral-24b", "mistral-24b-pvc", "pvc://mistral-24b-pvc/revisions/0123abcd/",
                 "/mnt/models/revisions/0123abcd")
    changed = write_served(out, old, new)
    assert [p.name for p in changed] == ["1-job-mistral-24b-populate.yaml", "2-verify-job-mistral-24b-verify.yaml",
                                         "3-isvc-mistral-24b.yaml", "4-gc-job-mistral-24b-gc.yaml"]
    args = _args(out)
    assert args["mistral-24b-populate"][2] == "/mnt/models/revisions/0123abcd"
    assert "--revision-root=/mnt/models" in args["mistral-24b-populate"]  # the claim's mount stays
    assert args["mistral-24b-verify"][1] == "/mnt/models/revisions/0123abcd"
    assert args["mistral-24b-gc"] == ["gc", "/mnt/models", "--keep=/mnt/models/revisions/0123abcd", "--yes"]
    assert isvc.read_text().startswith("# served by modelpvc\n")  # comments kept
    assert yaml.safe_load(isvc.read_text())["spec"]["predictor"]["model"]["storageUri"] == new.storage_uri
    assert {p.name: p.read_text() for p in out.iterdir() if "granite" in p.name} == before_other
    with pytest.raises(ConfigError, match="no single `storageUri: pvc://mistral-24b-pvc/` line"):
        write_served(out, old, new)  # already moved: nothing to point


def test_populator_declarations_name_a_model_source_and_apply_no_job(tmp_path, capsys):
    out = tmp_path / "pop"
    args = [a for a in SEED_ARGS[:-2]]
    assert main([*args, "--populator", "--install", "--validate", "-o", str(out)]) == 0
    docs = {(d["kind"], d["metadata"]["name"]): d for d in (yaml.safe_load(p.read_text()) for p in out.iterdir())}
    assert not [k for k in docs if k[0] == "Job"]  # nothing to apply by hand
    pvc = docs[("PersistentVolumeClaim", "mistral-24b-pvc")]
    assert pvc["spec"]["dataSourceRef"] == {"apiGroup": "modelpvc.io", "kind": "ModelSource", "name": "mistral-24b"}
    source = docs[("ModelSource", "mistral-24b")]
    assert source["spec"] == {"uri": "s3://llm-models/Mistral-Small-24B-Instruct/full-fp16/",
                              "endpoint": "http://minio.model-storage.svc:9000",
                              "secretRef": {"name": "s3-credentials-kserve"}}
    wave = "argocd.argoproj.io/sync-wave"
    # The server is the claim's first consumer: the same wave, or Argo CD waits for a claim that waits for it.
    assert docs[("InferenceService", "mistral-24b")]["metadata"]["annotations"][wave] == \
        pvc["metadata"]["annotations"][wave]
    role = docs[("ClusterRole", "modelpvc-populator")]
    assert not [r for r in role["rules"] if "secrets" in r["resources"]]  # the Job mounts the Secret itself
    assert {r["resources"][0]: r["verbs"] for r in role["rules"]}["persistentvolumes"] == ["get", "patch"]
    editors = docs[("ClusterRole", "modelpvc-modelsources-edit")]["metadata"]["labels"]
    assert editors["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"  # project admins declare them
    assert violations(docs[("Deployment", "modelpvc-populator")]["spec"]["template"]["spec"]) == []
    assert main([*args, "--install"]) == 2
    assert "add --populator" in capsys.readouterr().err


@pytest.mark.parametrize(("spec", "message"), [
    ({"uri": "llm-models/x/", "secretRef": {"name": "s"}}, "spec.uri 'llm-models/x/' is not an s3:// URI"),
    ({"uri": "s3://b/p/"}, "spec.secretRef.name is missing"),
    ({"uri": "s3://b/p/", "secretRef": {"name": "s"}, "verify": "md5"}, "spec.verify 'md5': choose auto, full, size"),
])
def test_a_model_source_that_cannot_work_is_refused_naming_the_field(spec, message):
    from modelpvc.core.errors import ConfigError
    from modelpvc.kube import modelsource

    with pytest.raises(ConfigError, match=re.escape(message)):
        modelsource.parse({"metadata": {"name": "m"}, "spec": spec})


def test_the_populators_job_reads_the_secret_as_files_on_the_node_the_scheduler_chose():
    from modelpvc.kube import modelsource
    from modelpvc.kube.populator import Populator

    pvc = {"metadata": {"name": "c", "namespace": "ns", "uid": "1234"}, "spec": {}}
    source = modelsource.parse({"metadata": {"name": "m"}, "spec": {
        "uri": "s3://b/p", "secretRef": {"name": "dc"}, "select": "all", "verify": "full"}})
    job = Populator(cluster=None, image="registry.local/modelpvc:1").job(pvc, source, "gpu-1")  # type: ignore[arg-type]
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeName"] == "gpu-1"
    assert {"name": "s3-credentials", "secret": {"secretName": "dc"}} in pod["volumes"]
    c = pod["containers"][0]
    assert c["args"][:3] == ["mirror", "s3://b/p/", "/mnt/models"]
    assert c["args"][c["args"].index("--credentials-dir") + 1] == "/var/run/secrets/modelpvc/s3"
    assert "--select" in c["args"] and "--verify" in c["args"]
    assert not [e for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert job["metadata"]["ownerReferences"][0]["uid"] == "1234"
    assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v} == \
        {"prime-1234"}
    assert violations(pod) == []
