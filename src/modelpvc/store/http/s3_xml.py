"""Reading S3's XML answers, with or without the 2006-03-01 namespace (servers differ)."""

from __future__ import annotations

from xml.etree import ElementTree

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def find(el: ElementTree.Element, name: str) -> str:
    """Text of the first child called ``name``, "" when absent."""
    found = el.find(NS + name)
    if found is None:
        found = el.find(name)
    return (found.text or "") if found is not None else ""


def findall(el: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return el.findall(NS + name) or el.findall(name)
