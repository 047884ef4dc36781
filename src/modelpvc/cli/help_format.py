"""How every command's --help lays out its description: paragraphs wrapped to the terminal, examples kept.

argparse's default formatter joins all paragraphs into one; the raw one prints source lines as written
(600-character lines when a description is built from concatenated strings). Here each paragraph is
wrapped to the width argparse computed; a paragraph whose lines are indented (examples, tables such as
the exit codes) is printed as written.
"""

from __future__ import annotations

import argparse
import textwrap


class ParagraphFormatter(argparse.RawDescriptionHelpFormatter):
    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for para in text.strip("\n").split("\n\n"):
            lines = para.splitlines()
            if any(line[:1].isspace() for line in lines[1:]) or para[:1].isspace():
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(textwrap.fill(" ".join(line.strip() for line in lines), width,
                                         initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(out)
