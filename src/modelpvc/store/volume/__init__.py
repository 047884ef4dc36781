"""The destination directory on a volume: its lock, journal, manifest, revisions, how it is written."""
