"""Result handling shared by the flows: their results are never persisted.

The API reads what it needs from a run's state, so a result store is never written. Naming
one here (Prefect's local storage path), and saying results are not persisted, saves each run
three Prefect API calls that look up the server's default result storage.
"""

from __future__ import annotations

from typing import Any

from prefect.settings import get_current_settings

UNPERSISTED_RESULTS: dict[str, Any] = {
    "persist_result": False,
    "result_storage": get_current_settings().results.local_storage_path,
}
