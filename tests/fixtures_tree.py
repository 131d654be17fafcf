"""The input tree of pfcon-observed.md's fslink happy path, for staging and HTTP tests."""

from __future__ import annotations

from pathlib import Path

FSLINK_FIXTURE = {
    "home/alice/feed/in/a.txt": "a",
    "home/alice/feed/in/sub/b.txt": "b",
    "home/alice/feed/in/mylink.chrislink": "home/bob/uploads/x",
    "home/alice/feed/in/sub/filelink.chrislink": "SHARED/data/s1.txt\n",
    "home/bob/uploads/x/x.txt": "x",
    "home/bob/uploads/x/back.chrislink": "home/alice/feed/in",
    "SHARED/data/s1.txt": "s1",
    "SHARED/data/s2.txt": "s2",
}

# What pfcon stages into key-<jid>/incoming from home/alice/feed/in (nfiles = 4).
FSLINK_STAGED = ["a.txt", "home_bob_uploads_x/x.txt", "sub/SHARED_data/s1.txt", "sub/b.txt"]


def make_fslink_fixture(store_base: Path) -> None:
    """Write the fixture tree under ``store_base`` (idempotent)."""
    for rel, content in FSLINK_FIXTURE.items():
        path = store_base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def tree(root: Path) -> list[str]:
    """Sorted relative paths of the files under ``root``."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
