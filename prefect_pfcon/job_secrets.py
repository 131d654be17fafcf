"""Job env values kept secret: sealed by the API, unsealed by the plugin flow only, masked
in the plugin's output.

A plugin job's ``env`` (CUBE sends the user's ``CHRIS_USER_TOKEN`` there) becomes flow-run
parameters, outbox rows and events, all readable by Prefect users. The API therefore stores
``env`` with every value replaced by ``SEALED_VALUE`` and the real entries as one Fernet
token in ``sealed_env``. The key is ``PFCON_JOB_SECRETS_KEY`` (a Fernet key; set the same on
the API and on work-pool workers), else a 0600 file created on first use: the one
``PFCON_JOB_SECRETS_KEY_FILE`` names (a path a site can share read-only with flow
containers), or ``job_secrets_key`` in the state dir.

Every env value of at least ``MASKED_MIN_CHARS`` characters is replaced by ``MASK`` in each
line of plugin output sent to Prefect (and, on Slurm, in the job's output file); shorter
values (``1``, ``yes``) would mask ordinary words.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from prefect_pfcon.models import PluginJob
from prefect_pfcon.settings import ServiceSettings
from prefect_pfcon.state_dir import read_or_create_secret

KEY_ENV = "PFCON_JOB_SECRETS_KEY"
KEY_FILE_ENV = "PFCON_JOB_SECRETS_KEY_FILE"
KEY_FILE = "job_secrets_key"
SEALED_VALUE = "<sealed>"
MASK = "***"
MASKED_MIN_CHARS = 4


class SealError(RuntimeError):
    """A sealed env that cannot be opened here (no key, or another key)."""


def _key_file(state_dir: Path | None) -> Path:
    named = os.environ.get(KEY_FILE_ENV, "").strip()
    return Path(named) if named else (state_dir or ServiceSettings().state_dir) / KEY_FILE


@lru_cache(maxsize=4)
def job_secrets_key(state_dir: Path | None = None, create: bool = False) -> Fernet:
    """The key: ``PFCON_JOB_SECRETS_KEY``, else its key file (made if ``create``)."""
    given = os.environ.get(KEY_ENV, "").strip()
    if given:
        try:
            return Fernet(given)
        except ValueError:
            raise SealError(f"{KEY_ENV} is not a Fernet key (32 url-safe base64-encoded bytes)") from None
    path = _key_file(state_dir)
    try:
        if create:
            return Fernet(read_or_create_secret(path, lambda: Fernet.generate_key().decode()))
        return Fernet(path.read_bytes().strip())
    except FileNotFoundError:
        raise SealError(f"No job secrets key here: set {KEY_ENV} to the API's key ({path} is missing)") from None


def redacted(env: list[str]) -> list[str]:
    """The entries' names, each value replaced by ``SEALED_VALUE``."""
    return [f"{entry.partition('=')[0]}={SEALED_VALUE}" for entry in env]


def seal(job: PluginJob, key: Fernet | None = None) -> PluginJob:
    """The job as it may be stored: ``env`` redacted, the real entries in ``sealed_env``
    (``key``: this process's own, made if need be, by default)."""
    if not job.env:
        return job.model_copy(update={"sealed_env": None})
    token = (key or job_secrets_key(create=True)).encrypt(json.dumps(job.env).encode()).decode()
    return job.model_copy(update={"env": redacted(job.env), "sealed_env": token})


def unsealed_env(job: PluginJob, key: Fernet | None = None) -> list[str]:
    """The job's real env entries (``env`` itself when it was never sealed)."""
    if job.sealed_env is None:
        return list(job.env)
    try:
        text = (key or job_secrets_key()).decrypt(job.sealed_env.encode()).decode()
    except InvalidToken:
        raise SealError(f"The job's sealed env was sealed with another key than this one ({KEY_ENV})") from None
    return json.loads(text)


def masked_values(env: list[str]) -> list[str]:
    """The values of ``env`` to mask in output, longest first (a value inside another is
    then not left half shown)."""
    values = {entry.partition("=")[2] for entry in env}
    return sorted((value for value in values if len(value) >= MASKED_MIN_CHARS), key=len, reverse=True)


def mask(text: str, values: list[str]) -> str:
    """``text`` with each of ``values`` replaced by ``MASK``."""
    for value in values:
        text = text.replace(value, MASK)
    return text
