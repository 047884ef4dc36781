"""Our SigV4 signer against AWS's documented example and against botocore for the same inputs."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

from modelpvc.store.http.sigv4 import EMPTY_SHA256, SigV4Signer

AK, SK = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
WHEN = datetime(2013, 5, 24, tzinfo=UTC)


def test_aws_documented_get_object_example():
    h = SigV4Signer(AK, SK, "us-east-1").sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", "",
                                              {"Range": "bytes=0-9"}, now=WHEN)
    assert h["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


@pytest.mark.parametrize(("path", "query", "headers", "token"), [
    ("/bucket/model/tokenizer%20%28copy%29.json", "", {"If-Match": '"abc"', "Range": "bytes=5-9"}, None),
    ("/bucket/", "continuation-token=a%2Bb&list-type=2&max-keys=1000&prefix=m%C3%BC%2F", {}, "session-tok"),
    ("/bucket/k", "partNumber=1", {"x-amz-checksum-mode": "ENABLED"}, None),
])
def test_same_signature_as_botocore(path, query, headers, token):
    host = "127.0.0.1:9000"
    ours = SigV4Signer(AK, SK, "eu-west-1", token).sign("GET", host, path, query, headers, now=WHEN)
    req = botocore.awsrequest.AWSRequest(method="GET", url=f"http://{host}{path}" + (f"?{query}" if query else ""),
                                         headers={**headers, "X-Amz-Date": "20130524T000000Z",
                                                  "X-Amz-Content-SHA256": EMPTY_SHA256,
                                                  **({"X-Amz-Security-Token": token} if token else {})})
    req.context["timestamp"] = "20130524T000000Z"
    auth = botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(AK, SK, token), "s3", "eu-west-1")
    expected = auth.signature(auth.string_to_sign(req, auth.canonical_request(req)), req)
    assert ours["Authorization"].endswith(f"Signature={expected}")


def test_repr_never_shows_the_secret():
    assert SK not in repr(SigV4Signer(AK, SK, "us-east-1"))
