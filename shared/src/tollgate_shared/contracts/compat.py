"""Whether a contract's new JSON Schema still serves the consumers of its old one.

A consumer reads the fields it knows and ignores the rest, so a producer may add
fields, add enum values a consumer has not seen (it must ignore them too: the guide
says so), make an optional field required, and narrow a field's type (a nullable one
never null). It may not remove a field, give a field a type or format it did not have,
make a required field optional (a consumer could find it missing), or drop an enum
value a consumer handles. Nested objects are held to the same rules.
"""

from typing import Any


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every change from `old` to `new` that would break an existing consumer."""
    return _object("", old, new, old.get("$defs", {}), new.get("$defs", {}))


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return defs.get(ref.rsplit("/", 1)[-1], {}) if isinstance(ref, str) else schema


def _variants(schema: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(schema, defs)
    return [_resolve(s, defs) for s in schema.get("anyOf", [schema])]


def _shape(schema: dict[str, Any]) -> tuple[str, str | None]:
    kind = schema.get("type") or ("object" if "properties" in schema else "const" if "const" in schema else "any")
    return str(kind), schema.get("format")


def _object(
    path: str, old: dict[str, Any], new: dict[str, Any], old_defs: dict[str, Any], new_defs: dict[str, Any]
) -> list[str]:
    problems = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    for name, old_field in old_props.items():
        where = f"{path}{name}"
        if name not in new_props:
            problems.append(f"{where}: removed")
            continue
        if name in old_required and name not in new_required:
            problems.append(f"{where}: was required, now optional")
        problems += _field(where, old_field, new_props[name], old_defs, new_defs)
    return problems


def _field(
    where: str, old: dict[str, Any], new: dict[str, Any], old_defs: dict[str, Any], new_defs: dict[str, Any]
) -> list[str]:
    problems = []
    old_variants, new_variants = _variants(old, old_defs), _variants(new, new_defs)
    old_shapes, new_shapes = {_shape(v) for v in old_variants}, {_shape(v) for v in new_variants}
    # Narrowing is safe (a field that was nullable now never is); anything new is not.
    if not new_shapes <= old_shapes and ("any", None) not in old_shapes:
        problems.append(f"{where}: type {sorted(map(str, old_shapes))} became {sorted(map(str, new_shapes))}")
    old_enum = {e for v in old_variants for e in v.get("enum", [v["const"]] if "const" in v else [])}
    new_enum = {e for v in new_variants for e in v.get("enum", [v["const"]] if "const" in v else [])}
    if old_enum and new_enum and not old_enum <= new_enum:
        problems.append(f"{where}: values {sorted(old_enum - new_enum)} no longer allowed")
    for o in old_variants:
        for n in new_variants:
            if _shape(o) == _shape(n) == ("object", None):
                problems += _object(f"{where}.", o, n, old_defs, new_defs)
    return problems
