"""Choose, per file, the strongest check the source offers cheaply (see VerifyLevel).

Order of preference: a checksum the source stored (a full-object CRC is hashed range by range in the
receiving threads; a composite one part by part), then the single-part ETag's MD5, then the multipart
ETag recomputed part by part. When nothing is checkable an MD5 is still recorded for ``verify --deep``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from modelpvc.core import digests
from modelpvc.core.digests import SIZE_ONLY, Expectation
from modelpvc.core.errors import IntegrityError
from modelpvc.core.models import ObjectInfo
from modelpvc.core.settings import VerifyLevel
from modelpvc.store.base import ObjectSource


def _parts(value: str) -> int | None:
    head, sep, tail = value.rpartition("-")
    return int(tail) if sep and head and tail.isdigit() else None


def _from_checksum(source: ObjectSource, obj: ObjectInfo) -> Expectation | None:
    found = source.full_checksum(obj)
    if found is None or not digests.known(found[0]):
        return None
    algo, value = found
    n = _parts(value)
    if n is None:
        return Expectation(f"checksum-{algo}", "whole", algo, value)
    part = source.part_size(obj)
    if part and -(-obj.size // part) == n:
        return Expectation(f"composite-{algo}", "parts", algo, value, part)
    return None


def _one(source: ObjectSource, obj: ObjectInfo, level: VerifyLevel) -> Expectation:
    if level is VerifyLevel.SIZE:
        return SIZE_ONLY
    if obj.checksum_algorithm:
        exp = _from_checksum(source, obj)
        if exp is not None:
            return exp
    if obj.etag_is_md5:
        return Expectation("md5", "whole", "md5", obj.etag.lower())
    if obj.multipart_parts is not None and obj.size > 0:
        part = source.part_size(obj)
        if part and -(-obj.size // part) == obj.multipart_parts:
            return Expectation("multipart-etag", "parts", "md5", obj.etag.lower(), part)
    if level is VerifyLevel.FULL:
        raise IntegrityError(
            f"{obj.rel}: the source offers nothing to verify it against (ETag {obj.etag!r}, no checksum)",
            hint="use --verify auto to copy it with a recorded digest but no end-to-end check",
        )
    # Nothing to compare with: still record a digest, so `verify --deep` can check the copy later.
    return Expectation("digest-md5", "whole", "md5")


def expectations(source: ObjectSource, objects: list[ObjectInfo], level: VerifyLevel) -> list[Expectation]:
    """One Expectation per object; HEAD requests (checksums, part sizes) run concurrently."""
    needs_head = [o for o in objects if o.checksum_algorithm or (o.multipart_parts and not o.etag_is_md5)]
    if level is VerifyLevel.SIZE or not needs_head:
        return [_one(source, o, level) for o in objects]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda o: _one(source, o, level), objects))
