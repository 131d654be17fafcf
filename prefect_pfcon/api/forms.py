"""Form parsing with pfcon's rules and error texts (Flask-RESTful's reqparse, bundled)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile

from prefect_pfcon.lib.images import image_reference

MISSING = "Missing required parameter in the post body"
JID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_JID_LENGTH = 63  # the shortest name limit of the backends (Docker, Slurm, Kubernetes)


def is_valid_jid(jid: str) -> bool:
    """Whether ``jid`` can name a job: ASCII letters, digits, ``_.-``, at most 63 characters."""
    return len(jid) <= MAX_JID_LENGTH and JID_PATTERN.fullmatch(jid) is not None


def job_id(value: str) -> str:
    """A jid with its leading ``/`` stripped; it must be usable as a container name."""
    jid = value.lstrip("/")
    if not is_valid_jid(jid):
        raise ValueError(
            f"{value!r} is not a valid job id (at most {MAX_JID_LENGTH} letters, digits, '_', '.', '-')"
        )
    return jid


class FormErrors(Exception):
    """Every bad field of a request at once: ``{field: message}``."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass(frozen=True)
class FormField:
    """One form field: its type, whether it repeats, default and allowed values."""

    name: str
    kind: Callable[[str], Any] = str
    required: bool = False
    many: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()

    def parse(self, form: FormData) -> Any:
        """The field's value; raises ``ValueError`` with pfcon's message."""
        values = [v for v in form.getlist(self.name) if not isinstance(v, UploadFile)]
        if not values:
            if self.required:
                raise ValueError(MISSING)
            return list(self.default or []) if self.many else self.default
        parsed = [self._convert(value) for value in values]
        return parsed if self.many else parsed[-1]

    def _convert(self, value: str) -> Any:
        if self.choices and value not in self.choices:
            raise ValueError(f"{value} is not a valid choice")
        return self.kind(value)


def parse_form(form: FormData, fields: Sequence[FormField]) -> dict[str, Any]:
    """Parse every field, raising ``FormErrors`` listing all bad ones."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in fields:
        try:
            values[field.name] = field.parse(form)
        except ValueError as error:
            errors[field.name] = str(error)
    if errors:
        raise FormErrors(errors)
    return values


def _limits(cpu: int | None = 1000, memory: int | None = 300, required: bool = False) -> list[FormField]:
    return [
        FormField("cpu_limit", int, required=required, default=cpu),
        FormField("memory_limit", int, required=required, default=memory),
    ]


JID = FormField("jid", job_id, required=True)

PLUGIN_FIELDS = [
    JID,
    FormField("args", many=True),
    FormField("args_path_flags", many=True),
    FormField("auid", required=True),
    FormField("number_of_workers", int, required=True),
    *_limits(None, None, required=True),
    FormField("gpu_limit", int, required=True),
    FormField("image", image_reference, required=True),
    FormField("entrypoint", required=True, many=True),
    FormField("type", required=True, choices=("fs", "ds", "ts")),
    FormField("env", many=True),
    FormField("input_dirs", many=True),
    FormField("output_dir"),
]
COPY_FIELDS = [JID, FormField("input_dirs", many=True), FormField("output_dir", required=True), *_limits()]
UPLOAD_FIELDS = [JID, FormField("job_output_path", required=True), *_limits()]
DELETE_FIELDS = [JID, *_limits()]
