"""Errors cross a pod boundary as records with a stable code: each class comes back as itself, and each
reaches `doctor` with advice of its own (not the generic "job failed")."""

from __future__ import annotations

import pytest

import modelpvc.kube.cluster
import modelpvc.store.bucket.s3_write  # noqa: F401  (their error classes join the table)
from modelpvc.cli.errors import error_record
from modelpvc.core import errors
from modelpvc.kube.doctor import JOB_ERRORS, job_error_advice

CLASSES = sorted(errors.error_types().values(), key=lambda c: c.code)


def _instance(cls: type[errors.ModelpvcError]) -> errors.ModelpvcError:
    if cls is errors.ModelsBelow:
        return cls("what happened", ["full-fp16"], hint="did you mean ...")
    if cls is errors.Interrupted:
        return cls(15)
    return cls("what happened", hint="what to do")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.code)
def test_every_error_class_reaches_doctor_with_its_own_advice(cls):
    record = error_record(_instance(cls), 5)
    assert record["code"] == cls.code
    diagnosis, title, _fix = job_error_advice(record)
    assert (diagnosis, title) == JOB_ERRORS[cls.code][:2]
    if cls is not errors.ModelpvcError:
        assert diagnosis != "job-failed", cls  # the generic advice is for what has no class


@pytest.mark.parametrize("cls", [c for c in CLASSES if c is not errors.Interrupted], ids=lambda c: c.code)
def test_a_record_becomes_the_same_error_class_again(cls):
    back = errors.from_record(error_record(_instance(cls), 5), "Job x failed")
    assert type(back) is cls
    assert back.message == "Job x failed: what happened"


def test_a_code_this_doctor_does_not_know_takes_its_parents_advice_and_an_old_record_its_class_name():
    assert job_error_advice({"code": "newer-kind-of-missing", "error": "SourceNotFound"})[0] == "source-missing"
    assert job_error_advice({"error": "DestinationFull"})[0] == "pvc-too-small"  # an older image: no code
    assert job_error_advice({"code": "from-the-future"})[0] == "job-failed"


def test_a_class_without_its_own_code_is_refused_when_it_is_defined():
    with pytest.raises(TypeError, match="must declare its own stable error code"):
        type("Forgetful", (errors.SourceError,), {})


def test_a_server_refusing_checksums_is_told_from_its_code_and_the_request_not_its_wording():
    from modelpvc.store.bucket.s3_write import ChecksumRefused, write_error

    body = b"<Error><Code>InvalidArgument</Code><Message>x-amz-sdk-checksum-algorithm unsupported</Message></Error>"
    assert isinstance(write_error(400, body, "PUT s3://b/k", "b", sent_checksum=True), ChecksumRefused)
    worded = b"<Error><Code>InvalidArgument</Code><Message>Invalid checksum type</Message></Error>"
    plain = write_error(400, worded, "PUT s3://b/k", "b", sent_checksum=False)
    assert not isinstance(plain, ChecksumRefused) and isinstance(plain, errors.DestinationError)
    assert isinstance(write_error(501, b"", "PUT s3://b/k", "b", sent_checksum=True), ChecksumRefused)
    assert isinstance(write_error(501, b"", "PUT s3://b/k", "b"), errors.TransientError)
