"""Checks of one entity or relation against the rest of an app's metadata (a `Registry`).

`parse.py` judges a definition on its own; this module judges it among the others: name and
table collisions, keys that must exist, join tables, system-table names. The admin saves run
both before they write anything.
"""

from __future__ import annotations

from rocketd.metadata.model import Entity, Relation
from rocketd.metadata.parse import RESERVED_ENTITY_NAMES, SYSTEM_TABLE_PREFIXES
from rocketd.metadata.registry import Registry


def _is_system_table(table: str) -> bool:
    return table.startswith(SYSTEM_TABLE_PREFIXES)


def _system_table_problem(what: str, table: str) -> str:
    prefixes = " or ".join(f'"{p}"' for p in SYSTEM_TABLE_PREFIXES)
    return f'{what} "{table}" is reserved for system tables (names starting with {prefixes})'


def _key_fields(relation: Relation) -> list[tuple[str, str, str]]:
    """(entity, field, role) for every entity field a relation depends on."""
    keys = [(relation.source, relation.source_key, "source_key")]
    if not relation.many_to_many and relation.target_key:
        keys.append((relation.target, relation.target_key, "target_key"))
    return keys


def entity_problems_in(
    registry: Registry, entity: Entity, *, replacing: str | None = None
) -> list[str]:
    """Problems `entity` would cause among the app's other metadata.

    `replacing` names the entity being overwritten (PUT); it is left out of the collision checks.
    Duplicate entity names are the caller's 409, not a problem here.
    """
    problems: list[str] = []
    if entity.name in RESERVED_ENTITY_NAMES or entity.name.startswith("_"):
        problems.append(
            f'entity name "{entity.name}" is reserved: /api/{{app}}/{entity.name} is a route of'
            " its own; choose another name"
        )
    if _is_system_table(entity.table):
        problems.append(_system_table_problem("table", entity.table))
    for other in registry.entities.values():
        if other.name in (entity.name, replacing):
            continue
        if other.table == entity.table:
            problems.append(f'table "{entity.table}" is already used by entity "{other.name}"')
    for relation in registry.relations.values():
        if relation.many_to_many and relation.join_table == entity.table:
            problems.append(
                f'table "{entity.table}" is the join table of relation "{relation.name}"'
            )

    renamed = replacing is not None and replacing != entity.name
    for relation in registry.relations.values():
        if renamed and replacing in (relation.source, relation.target):
            problems.append(
                f'entity "{replacing}" cannot be renamed: relation "{relation.name}" refers to it'
            )
            continue
        if entity.name not in (relation.source, relation.target):
            continue
        for owner, key, role in _key_fields(relation):
            if owner == entity.name and key not in entity.field_map:
                problems.append(
                    f'field "{key}" is used by relation "{relation.name}" ({role});'
                    " keep the field or change the relation first"
                )
        if relation.source == entity.name and relation.name in entity.field_map:
            problems.append(_shadowed_relation_problem(relation.name, entity.name))
    return problems


def _shadowed_relation_problem(relation: str, entity: str) -> str:
    return (
        f'relation "{relation}" has the same name as a field of its source entity "{entity}":'
        " a write body could not tell them apart; rename one of them"
    )


def relation_problems_in(
    registry: Registry, relation: Relation, *, replacing: str | None = None
) -> list[str]:
    """Problems `relation` would cause among the app's other metadata: missing entities or key
    fields, join-table collisions, a name shadowed by a field.

    `replacing` names the relation being overwritten (PUT); it is left out of the collision checks.
    Duplicate relation names are the caller's 409, not a problem here.
    """
    problems: list[str] = []
    source = registry.entity(relation.source)
    target = registry.entity(relation.target)
    if source is None:
        problems.append(f"source entity not found: {relation.source}")
    if target is None:
        problems.append(f"target entity not found: {relation.target}")
    for owner_name, key, role in _key_fields(relation):
        owner = registry.entity(owner_name)
        if owner is not None and key not in owner.field_map:
            problems.append(f'{role} "{key}" is not a field of entity "{owner_name}"')
    if source is not None and relation.name in source.field_map:
        problems.append(_shadowed_relation_problem(relation.name, source.name))
    if relation.many_to_many and relation.join_table:
        problems.extend(_join_table_problems(registry, relation, replacing))
    return problems


def _join_table_problems(
    registry: Registry, relation: Relation, replacing: str | None
) -> list[str]:
    join_table = relation.join_table or ""
    problems: list[str] = []
    if _is_system_table(join_table):
        problems.append(_system_table_problem("join table", join_table))
    for entity in registry.entities.values():
        if entity.table == join_table:
            problems.append(f'join table "{join_table}" is the table of entity "{entity.name}"')
    # Two many-to-many relations may share a join table only when they read it the same way
    # (e.g. one defined from each side): same columns pointing at the same entities.
    layout = {
        (relation.source, relation.source_join_key),
        (relation.target, relation.target_join_key),
    }
    for other in registry.relations.values():
        if other.name in (relation.name, replacing) or other.join_table != join_table:
            continue
        if not other.many_to_many:
            continue
        other_layout = {
            (other.source, other.source_join_key),
            (other.target, other.target_join_key),
        }
        if other_layout != layout:
            problems.append(
                f'join table "{join_table}" is already used by relation "{other.name}"'
                " with different join keys"
            )
    return problems
