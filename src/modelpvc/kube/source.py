"""The source as the cluster commands see it: listed from this machine with the keys a Secret holds."""

from __future__ import annotations

from dataclasses import dataclass

from modelpvc.core.models import ObjectInfo
from modelpvc.core.provenance import split_record
from modelpvc.core.secretkeys import endpoint_in
from modelpvc.core.settings import Credentials, S3Settings
from modelpvc.kube.spec import ModelSpec
from modelpvc.model.select import make_selector
from modelpvc.store.sources.base import parse_source
from modelpvc.store.sources.s3 import S3Source


@dataclass(frozen=True)
class Listing:
    """What the populate Job will copy, as listed from here or by a probe Job in the cluster."""

    entries: tuple[tuple[str, int, str], ...]  # (path, size, etag), selected
    where: str  # "here" or "the cluster"
    skipped: int = 0  # duplicates the selection leaves out

    @property
    def bytes(self) -> int:
        return sum(size for _path, size, _etag in self.entries)

    @property
    def files(self) -> int:
        return len(self.entries)


def list_selected(spec: ModelSpec, values: dict[str, str], pair: tuple[str, str]) -> tuple[list[ObjectInfo], int]:
    """(objects the populate Job will copy, how many duplicates auto-selection skips).

    Short timeouts: from an operator's laptop an in-cluster endpoint is often unreachable, and the caller
    then asks the cluster instead (SourceUnreachable).
    """
    endpoint = spec.endpoint_url or endpoint_in(values)
    region = spec.region or values.get("AWS_DEFAULT_REGION") or "us-east-1"
    settings = S3Settings(endpoint_url=endpoint, region=region, read_timeout=5.0, max_attempts=2,
                          metadata_deadline=10.0,
                          credentials=Credentials(values[pair[0]], values[pair[1]], origin=f"secret {spec.secret}"))
    src = S3Source(parse_source(spec.source), settings)
    try:
        objs, _record = split_record(src.list_objects())
    finally:
        src.close()
    skips = make_selector("auto", [], [], spec.loader)(objs).skips
    return [x for x in objs if x.rel not in skips], len(skips)
