"""Where bytes are: what mirror reads (sources), what import reads (origins) and writes (bucket), the
directory a copy lands in (volume), and the HTTP stack they share (http)."""
