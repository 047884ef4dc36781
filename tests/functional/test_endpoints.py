"""Endpoint shapes real users have: HTTPS with a private CA (OpenShift service CA, self-signed MinIO), and
buckets with more than one listing page."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelpvc.devtools.s3server import RcloneS3
from modelpvc.model.synthetic import SyntheticModel, generate_model, same_tree
from tests.conftest import run_cli


def _cert(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test service CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minio")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem, srv_pem, srv_key = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    srv_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    srv_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return ca_pem, srv_pem, srv_key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[RcloneS3, Path, Path]]:
    ca, cert, key = _cert(tmp_path)
    root = tmp_path / "s3"
    model = root / "models" / "tls"
    generate_model(model, SyntheticModel(total_bytes=4 * 1024 * 1024, shards=2))
    srv = RcloneS3(root, extra=["--cert", str(cert), "--key", str(key)]).start()
    yield srv, ca, model
    srv.stop()


def test_https_endpoint_with_a_private_ca(tls_server, env, tmp_path):
    srv, ca, model = tls_server
    e = {**env, **srv.env(), "AWS_ENDPOINT_URL": f"https://127.0.0.1:{srv.port}"}
    r = run_cli(["mirror", "s3://models/tls/", str(tmp_path / "a")], e)
    assert r.returncode == 3
    assert "TLS certificate of https://127.0.0.1" in r.stderr and "--ca-bundle" in r.stderr
    r = run_cli(["mirror", "s3://models/tls/", str(tmp_path / "b"), "--ca-bundle", str(ca)], e)
    assert r.returncode == 0, r.stderr
    assert same_tree(model, tmp_path / "b") == []
    r = run_cli(["mirror", "s3://models/tls/", str(tmp_path / "c"), "--insecure"], e)
    assert r.returncode == 0, r.stderr


def test_listing_past_one_page_copies_every_object(s3, env, tmp_path):
    d = s3.root / "models" / "many"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(1234):
        (d / f"f{i:05d}.txt").write_text(f"{i}\n")
    s3.publish("models/many")
    r = run_cli(["mirror", "s3://models/many/", str(tmp_path / "pvc"), "--no-structure-check"], env)
    assert r.returncode == 0, r.stderr
    assert same_tree(d, tmp_path / "pvc") == []
    assert "1234 files fetched" in r.stdout


def test_aws_ca_bundle_variable_is_honoured(tls_server, env, tmp_path):
    srv, ca, model = tls_server
    e = {**env, **srv.env(), "AWS_ENDPOINT_URL": f"https://127.0.0.1:{srv.port}", "AWS_CA_BUNDLE": str(ca)}
    r = run_cli(["mirror", "s3://models/tls/", str(tmp_path / "pvc")], e)
    assert r.returncode == 0, r.stderr
    assert same_tree(model, tmp_path / "pvc") == []


def test_aws_profile_with_a_shared_credentials_file(make_model, env, s3, tmp_path):
    """No AWS_ACCESS_KEY_ID: the keys come from the profile AWS_PROFILE names, as every AWS SDK reads them."""
    src = make_model()
    creds = tmp_path / "credentials"
    creds.write_text(f"[other]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n"
                     f"[models]\naws_access_key_id = {s3.access_key}\n"
                     f"aws_secret_access_key = {s3.secret_key}\n")
    config = tmp_path / "config"
    config.write_text("[profile models]\nregion = eu-west-1\n")
    e = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                   "AWS_DEFAULT_REGION")}
    e.update(AWS_PROFILE="models", AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_CONFIG_FILE=str(config))
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc")], e)
    assert r.returncode == 0, r.stderr
    assert same_tree(src.dir, tmp_path / "pvc") == []
    r = run_cli(["mirror", src.uri, str(tmp_path / "pvc2")], {**e, "AWS_PROFILE": "nope"})
    assert r.returncode == 2 and "AWS_PROFILE" in r.stderr


def test_empty_objects_and_a_model_whose_names_need_encoding(s3, env, tmp_path):
    d = s3.root / "models" / "odd names"
    generate_model(d, SyntheticModel(total_bytes=2 * 1024 * 1024, shards=2))
    (d / "empty.txt").write_bytes(b"")
    (d / "notes #1 + 50% = ok.md").write_text("é")
    s3.publish("models/odd names")
    r = run_cli(["mirror", "s3://models/odd names/", str(tmp_path / "pvc"), "--progress", "json"], env)
    assert r.returncode == 0, r.stderr
    assert same_tree(d, tmp_path / "pvc") == []
    assert (tmp_path / "pvc" / "empty.txt").stat().st_size == 0


def test_the_hub_client_names_a_refused_certificate(tls_server):
    # Any HTTPS server will do: the handshake fails before a request is sent.
    from modelpvc.core.errors import ModelpvcError, SourceUnreachable
    from modelpvc.store.http.hub_http import HubEndpoint, HubReader

    srv, ca, _model = tls_server
    url = f"https://127.0.0.1:{srv.port}"
    with pytest.raises(SourceUnreachable, match=r"TLS certificate of 127\.0\.0\.1 was not accepted") as refused:
        HubReader(HubEndpoint(url), "org/model", "a" * 40).open("config.json", 0, 1)
    assert "--hub-ca-bundle" in (refused.value.hint or "")
    try:  # trusting the CA, the handshake passes: whatever the server then answers, it is not about TLS
        HubReader(HubEndpoint(url, ca_bundle=str(ca)), "org/model", "a" * 40).open("config.json", 0, 1)
    except ModelpvcError as e:
        assert "TLS certificate" not in str(e)


# -- endpoint mistakes a user makes in the first hour --------------------------------------------------------
@pytest.fixture
def web_server() -> Iterator[str]:
    """Not an S3 server: a web page server (a MinIO console's port, a proxy's default site) that 404s."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotS3(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>404 page not found</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            return None

    srv = ThreadingHTTPServer(("127.0.0.1", 0), NotS3)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_a_server_that_is_not_s3_is_not_reported_as_a_missing_bucket(web_server, env, tmp_path):
    r = run_cli(["mirror", "s3://models/m/", str(tmp_path / "d"), "--endpoint-url", f"http://{web_server}"], env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "does not look like an S3 server" in r.stderr and "does not exist" not in r.stderr


def test_https_against_a_plain_http_server_says_so(s3, env, tmp_path):
    endpoint = env["AWS_ENDPOINT_URL"].replace("http://", "https://")
    r = run_cli(["mirror", "s3://models/m/", str(tmp_path / "d"), "--endpoint-url", endpoint, "--retries", "0"], env)
    assert r.returncode != 0
    assert "does not speak TLS on this port (is it http://?)" in r.stderr, r.stderr
    assert "SSLError" not in r.stderr


def test_an_endpoint_without_a_scheme_is_a_usage_error_on_the_command_line(env, tmp_path):
    r = run_cli(["mirror", "s3://models/m/", str(tmp_path / "d"), "--endpoint-url", "minio.local:9000"], env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "say the scheme" in r.stderr and "http://minio.local:9000" in r.stderr


def test_an_in_cluster_name_from_a_laptop_gets_the_port_forward_hint(env, tmp_path):
    r = run_cli(["mirror", "s3://models/m/", str(tmp_path / "d"), "--endpoint-url",
                 "http://minio.model-storage.svc:9000", "--retries", "0"], env)
    assert r.returncode != 0
    assert "is a name inside the cluster" in r.stderr and "oc port-forward" in r.stderr, r.stderr


def test_anonymous_against_a_server_that_wants_keys_says_so(s3, env, tmp_path, make_model):
    src = make_model()
    r = run_cli(["mirror", src.uri, str(tmp_path / "d"), "--anonymous"], env)
    assert r.returncode in (2, 3), r.stdout + r.stderr
    assert "this bucket is not public" in r.stderr and "AWS_ACCESS_KEY_ID" in r.stderr, r.stderr
