"""JSON request bodies and the schema validator's DEBUG lines about them.

Light-4j validates every request against the service's OpenAPI schema with networknt's
json-schema-validator, which logs each validation step at DEBUG as
``validate( <node>, <root node>, <path>)``: for a JSON body first the whole object (node and
root are the body), then every property, whose line again carries the WHOLE body as root node.
A register request of the recording harness therefore logs its random values (ids, names,
e-mails, passwords: :mod:`loglead_lo2.generator.values`) a dozen times, inside JSON. These
lines are most of the variety of the real logs and the hardest input of the normaliser.

Bodies follow the harness (``M3SOulu/light-oauth2`` ``locust/locustfiles``): field order of its
``to_dict()`` methods, constants such as ``"scope":"read write"`` and ``"host":"lightapi.net"``,
placeholders (``@{name}``) for the per-request random values.
"""

from __future__ import annotations

from loglead_lo2.generator.layout import body

SCHEMA = "com.networknt.schema."
Field = tuple[str, str]
"""(JSON key, value template): a value is a literal or an ``@{placeholder}``."""

USER_FIELDS: list[Field] = [
    ("userId", "@{user_id}"), ("userType", "admin"), ("firstName", "@{first_name}"),
    ("lastName", "@{last_name}"), ("email", "@{email}"), ("password", "@{password}"),
    ("passwordConfirm", "@{password}"),
]
PASSWORD_FIELDS: list[Field] = [
    ("password", "@{password}"), ("newPassword", "@{new_password}"),
    ("newPasswordConfirm", "@{new_password}"),
]
CLIENT_FIELDS: list[Field] = [
    ("clientType", "public"), ("clientProfile", "mobile"), ("clientName", "@{client_name}"),
    ("clientDesc", "@{client_desc}"), ("scope", "read write"),
    ("redirectUri", "http://localhost:8000/authorization"), ("ownerId", "admin"),
    ("host", "lightapi.net"),
]
SERVICE_FIELDS: list[Field] = [
    ("serviceType", "openapi"), ("serviceId", "@{svc_id}"), ("serviceName", "@{svc_name}"),
    ("serviceDesc", "@{svc_desc}"), ("scope", "read write"), ("ownerId", "admin"),
    ("host", "lightapi.net"),
]
ENUMS = frozenset({"userType", "clientType", "clientProfile", "serviceType"})
BOUNDED = frozenset({"userId", "serviceId", "clientName", "serviceName", "firstName",
                     "lastName", "password", "newPassword"})


def json_object(fields: list[Field]) -> str:
    """Compact JSON of string fields, as Jackson prints a request body node."""
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in fields) + "}"


def replace_field(fields: list[Field], key: str, value: str | None) -> list[Field]:
    """``fields`` with ``key`` set to ``value`` (``None`` drops the field)."""
    out = [(k, value if k == key else v) for k, v in fields]
    return [(k, v) for k, v in out if v is not None]


def _line(validator: str, node: str, root: str, at: str) -> str:
    return body("DEBUG", SCHEMA + validator, "debug", f"validate( {node}, {root}, {at})")


def validate_body(fields: list[Field], stop_at: str | None = None) -> list[str]:
    """The validator's lines for one JSON body: object, required, then each property
    (type, plus enum / max-length checks where the schema has them). ``stop_at``: the key
    whose check fails (the validation error ends the walk there)."""
    root = json_object(fields)
    lines = [_line("PropertiesValidator", root, root, "$"),
             _line("RequiredValidator", root, root, "$")]
    for key, value in fields:
        node, at = f'"{value}"', f"$.{key}"
        lines.append(_line("TypeValidator", node, root, at))
        if key in ENUMS:
            lines.append(_line("EnumValidator", node, root, at))
        elif key in BOUNDED:
            lines.append(_line("MaxLengthValidator", node, root, at))
        if key == stop_at:
            break
    return lines
