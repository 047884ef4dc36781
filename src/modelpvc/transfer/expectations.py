"""Choose, per file, the strongest check the source offers cheaply (see VerifyLevel)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from modelpvc.core.errors import IntegrityError
from modelpvc.core.models import ObjectInfo
from modelpvc.core.settings import VerifyLevel
from modelpvc.store.base import ObjectSource
from modelpvc.transfer.digest import Expectation, new_hasher


def _one(source: ObjectSource, obj: ObjectInfo, level: VerifyLevel) -> Expectation:
    if level is VerifyLevel.SIZE:
        return Expectation("size")
    if obj.checksum_algorithm:
        found = source.full_checksum(obj)
        if found is not None and new_hasher(found[0]) is not None:
            return Expectation(f"checksum-{found[0]}", algorithm=found[0], expected=found[1])
    if obj.etag_is_md5:
        return Expectation("md5", algorithm="md5", expected=obj.etag.lower())
    if obj.multipart_parts is not None and obj.size > 0:
        part = source.part_size(obj)
        if part and -(-obj.size // part) == obj.multipart_parts:
            return Expectation("multipart-etag", expected=obj.etag.lower(), part_size=part)
    if level is VerifyLevel.FULL:
        raise IntegrityError(
            f"{obj.rel}: the source offers nothing to verify it against (ETag {obj.etag!r}, no checksum)",
            hint="use --verify auto to copy it with a recorded digest but no end-to-end check",
        )
    # Nothing to compare with: still record a digest, so `verify --deep` can check the copy later.
    return Expectation("digest-md5", algorithm="md5")


def expectations(source: ObjectSource, objects: list[ObjectInfo], level: VerifyLevel) -> list[Expectation]:
    """One Expectation per object; HEAD requests (checksums, part sizes) run concurrently."""
    needs_head = [o for o in objects if o.checksum_algorithm or (o.multipart_parts and not o.etag_is_md5)]
    if level is VerifyLevel.SIZE or not needs_head:
        return [_one(source, o, level) for o in objects]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda o: _one(source, o, level), objects))
