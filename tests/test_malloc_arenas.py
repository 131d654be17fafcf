"""``up`` caps glibc's malloc arenas: counted in real processes with glibc's ``malloc_info``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Eight threads live at once each allocate outside Python's small-object allocator (a thread
# that ended hands its arena on), then the process prints how many arenas glibc made
# (``<heap nr=...>`` in malloc_info's XML).
ARENAS_AFTER_THREADS = """
import ctypes, sys, threading
from prefect_pfcon.malloc_arenas import cap_malloc_arenas
if sys.argv[1] == "cap":
    assert cap_malloc_arenas()
all_allocated = threading.Barrier(8)
def allocate():
    kept = [bytearray(10_000) for _ in range(20)]
    all_allocated.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.open_memstream.restype = ctypes.c_void_p
buffer, size = ctypes.c_char_p(), ctypes.c_size_t()
stream = ctypes.c_void_p(libc.open_memstream(ctypes.byref(buffer), ctypes.byref(size)))
libc.malloc_info(0, stream)
libc.fclose(stream)
print(buffer.value.decode().count("<heap nr="))
"""


def _arenas(mode: str) -> int:
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", ARENAS_AFTER_THREADS, mode], env=env,
                          capture_output=True, text=True, check=True, timeout=60)
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_cap_keeps_threads_to_two_arenas() -> None:
    assert _arenas("uncapped") > 2  # the threads would have arenas of their own
    assert _arenas("cap") <= 2


def test_environment_setting_is_left_to_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_pfcon.malloc_arenas import cap_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False
