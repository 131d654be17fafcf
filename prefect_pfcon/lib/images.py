"""Plugin image references, checked against the container image reference grammar.

A reference is ``[domain/]path[:tag][@digest]``: the domain (a host name with a dot, a
port or ``localhost``; or ``[IPv6]``) may have a port, path components are lowercase
alphanumerics joined by ``.``, ``_``, ``__`` or dashes, a tag is at most 128 word
characters, dots and dashes (not starting with either), a digest is ``algorithm:hex``.
Whatever passes is a value to every container runtime, never one of its options.
"""

from __future__ import annotations

import re

NAME_MAX_LENGTH = 255
REFERENCE_MAX_LENGTH = 512

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PORT = r"(?::[0-9]+)"
_DOMAIN = (
    rf"(?:(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})+|localhost|\[[a-fA-F0-9:]+\]){_PORT}?"
    rf"|{_DOMAIN_COMPONENT}{_PORT})"
)
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::{_TAG})?(?:@{_DIGEST})?",
    re.ASCII,
)


def image_reference(value: str) -> str:
    """``value`` if it is a valid image reference; raises ``ValueError`` saying why not."""
    if len(value) > REFERENCE_MAX_LENGTH:
        raise ValueError(f"{value[:40]!r}... is not a valid image reference (over {REFERENCE_MAX_LENGTH} characters)")
    match = REFERENCE.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not a valid image reference ([registry/]lowercase/name[:tag][@digest])")
    if len(match["name"]) > NAME_MAX_LENGTH:
        raise ValueError(f"{value[:40]!r}... is not a valid image reference (name over {NAME_MAX_LENGTH} characters)")
    return value
