"""Choose, per file, the strongest check the source offers cheaply (see VerifyLevel).

Order of preference: a checksum the source stored (a full-object CRC is hashed range by range in the
receiving threads; a composite one part by part), then the single-part ETag's MD5, then the multipart
ETag recomputed part by part. When nothing is checkable an MD5 is still recorded for ``verify --deep``.

A stored checksum costs a HEAD per object, unless the object is fetched by one GET: that GET asks for
it (``x-amz-checksum-mode``) and the value arrives with the bytes. Such objects get a ``from_answer``
expectation, ``settle``d once the GET has answered. AWS stores CRC-64/NVME on every new object, so
without this a mirror of 2,000 small files would first make 2,000 HEADs.

AWS's listing names each object's checksum algorithm; MinIO's names none, yet it stores what uploaders
send (boto3's default composite CRC32 on multipart uploads, a full-object CRC64NVME from ``modelpvc
import``). When no listed object names one, each object fetched in several ranges is asked with a HEAD:
one request per large file buys a CRC at 10+ GB/s instead of an MD5 at 0.7 GB/s (decisions §16).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from modelpvc.core import digests
from modelpvc.core.digests import SIZE_ONLY, Expectation
from modelpvc.core.errors import IntegrityError
from modelpvc.core.models import ObjectInfo
from modelpvc.core.settings import VerifyLevel
from modelpvc.store.sources.base import ObjectSource
from modelpvc.transfer import ranges


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


def _one(source: ObjectSource, obj: ObjectInfo, level: VerifyLevel, ask: bool = True,
         unlisted: bool = False) -> Expectation:
    """``ask=False``: the source already said it has no usable stored checksum for ``obj``.
    ``unlisted``: the listing names no checksums at all, so it cannot tell whether ``obj`` has one."""
    if level is VerifyLevel.SIZE:
        return SIZE_ONLY
    if ask and (obj.checksum_algorithm or unlisted):
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


def _from_answer(obj: ObjectInfo, part_size: int) -> Expectation | None:
    """A listed checksum of an object fetched by one GET (cut at ``part_size`` as ``ranges.split`` does)."""
    algo = obj.checksum_algorithm
    if not algo or not digests.known(algo) or obj.multipart_parts is not None \
            or not ranges.one_get(obj.size, part_size):
        return None  # multipart: its value may be composite, checked part by part; ranged GETs carry none
    return Expectation(f"checksum-{algo}", "whole", algo, None, from_answer=True)


def expectations(source: ObjectSource, objects: list[ObjectInfo], level: VerifyLevel,
                 part_size: int) -> list[Expectation]:
    """One Expectation per object; HEAD requests (checksums, part sizes) run concurrently. Objects the
    transfer fetches by one GET (ranges of ``part_size``) take their checksum from that GET."""
    if level is VerifyLevel.SIZE:
        return [SIZE_ONLY] * len(objects)
    out = [_from_answer(o, part_size) for o in objects]
    unlisted = not any(o.checksum_algorithm for o in objects)
    asked = [unlisted and o.size > 0 and (o.multipart_parts is not None or not ranges.one_get(o.size, part_size))
             for o in objects]
    todo = [i for i, (o, e) in enumerate(zip(objects, out, strict=True))
            if e is None and (o.checksum_algorithm or asked[i] or (o.multipart_parts and not o.etag_is_md5))]
    if todo:
        with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
            for i, exp in zip(todo, pool.map(lambda i: _one(source, objects[i], level, unlisted=asked[i]), todo),
                              strict=True):
                out[i] = exp
    return [e if e is not None else _one(source, o, level) for o, e in zip(objects, out, strict=True)]


def settle(source: ObjectSource, obj: ObjectInfo, level: VerifyLevel, exp: Expectation, asked: bool,
           answer: tuple[str, str] | None) -> Expectation:
    """What a ``from_answer`` expectation becomes once its GET answered with ``answer``. ``asked``: the
    GET asked for the checksum (a resumed file's ranged GETs do not; then a HEAD asks)."""
    if answer is not None and answer[0] == exp.algorithm and _parts(answer[1]) is None:
        return replace(exp, expected=answer[1], from_answer=False)
    return _one(source, obj, level, ask=not asked)
