from collections.abc import Sequence

_Where = int | memoryview | bytes | bytearray  # a file descriptor, or a buffer whose bytes are hashed in place

# (where, start, end) or (where, start, end, state, prior, last): see modelpvc.core.md5_native
def md5_spans(spans: Sequence[tuple[_Where, int, int] | tuple[_Where, int, int, bytes | None, int, bool]], /,
              ) -> list[bytes]: ...
def isa() -> str: ...
