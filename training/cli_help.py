"""The ``--help`` of every ``python -m training`` command: plain text, defaults shown."""

from __future__ import annotations

import argparse
import re

from algorithm.cli import HelpFormatter


def plain_text(doc: str | None) -> str:
    """A module docstring as help text: without reST markup (``code``, `refs`, *emphasis*)."""
    text = re.sub(r"``([^`]+)``", r"\1", doc or "")
    text = re.sub(r"`([^`]+)`", r"\1", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\1", text)
    return text.strip()


def command_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose description is ``doc`` as plain text, paragraphs kept."""
    return argparse.ArgumentParser(prog=prog, description=plain_text(doc), formatter_class=HelpFormatter)
