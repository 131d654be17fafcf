"""Building a plugin's command line exactly as pfcon does (spec section 7)."""

from __future__ import annotations

from collections.abc import Sequence

INCOMING = "/share/incoming"
OUTGOING = "/share/outgoing"


def localize_path_args(args: Sequence[str], path_flags: Sequence[str]) -> list[str]:
    """Replace the value following each path flag with ``/share/incoming``."""
    flags = set(path_flags)
    localized: list[str] = []
    replace_next = False
    for arg in args:
        if replace_next:
            localized.append(INCOMING)
            replace_next = False
        else:
            localized.append(arg)
            replace_next = arg in flags
    return localized


def build_plugin_command(
    entrypoint: Sequence[str], args: Sequence[str], path_flags: Sequence[str], plugin_type: str
) -> list[str]:
    """``entrypoint + localized args + [incoming if ds] + [outgoing]``."""
    inputs = [INCOMING] if plugin_type == "ds" else []
    return [*entrypoint, *localize_path_args(args, path_flags), *inputs, OUTGOING]
