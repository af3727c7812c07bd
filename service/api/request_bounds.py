"""The edge check of every request against the table of :mod:`service.core.limits`.

Every request message passes :func:`check_request` before it is converted: each string field,
wherever it sits in the message (map keys and values, repeated elements, nested messages), must
be printable (no NUL or other control character: PostgreSQL cannot store a NUL, and no id, name,
label or URL needs one) and within its length; each repeated or map field within its count. A
field not named in the table gets the defaults. Refusals are INVALID_ARGUMENT and name the
field, never quote the value (it may be a megabyte).
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from service.core.errors import InvalidRequest
from service.core.limits import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_ITEMS,
    MAX_CHARS,
    MAX_ITEMS,
    MAX_LABEL_KEY_CHARS,
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_request(message: Message, path: str = "") -> None:
    """Raise InvalidRequest for the first field of ``message`` that is out of bounds."""
    for field, value in message.ListFields():
        name = f"{path}{field.name}"
        key = f"{field.containing_type.name}.{field.name}"
        if _is_map(field):
            _check_count(name, key, len(value))
            value_field = field.message_type.fields_by_name["value"]
            for map_key, map_value in value.items():
                _check_text(f"{name} key", map_key, MAX_LABEL_KEY_CHARS)
                if value_field.type == FieldDescriptor.TYPE_STRING:
                    _check_text(f"{name} value", map_value, MAX_CHARS.get(key, DEFAULT_MAX_CHARS))
                elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    check_request(map_value, f"{name}.")
        elif _is_repeated(field):
            _check_count(name, key, len(value))
            for item in value:
                _check_one(field, name, key, item)
        else:
            _check_one(field, name, key, value)


def _check_one(field: FieldDescriptor, name: str, key: str, value: Any) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        _check_text(name, value, MAX_CHARS.get(key, DEFAULT_MAX_CHARS))
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        check_request(value, f"{name}.")


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _is_map(field: FieldDescriptor) -> bool:
    return (
        _is_repeated(field)
        and field.type == FieldDescriptor.TYPE_MESSAGE
        and field.message_type.GetOptions().map_entry
    )


def _check_count(name: str, key: str, count: int) -> None:
    limit = MAX_ITEMS.get(key, DEFAULT_MAX_ITEMS)
    if count > limit:
        raise InvalidRequest(f"{name} has {count} entries; this server accepts at most {limit}")


def _check_text(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidRequest(
            f"{name} is {len(value)} characters long; this server accepts at most {limit}"
        )
    if found := _CONTROL.search(value):
        raise InvalidRequest(
            f"{name} contains the control character U+{ord(found.group()):04X} at position"
            f" {found.start()}; ids, names, labels and URLs must be printable text"
        )
