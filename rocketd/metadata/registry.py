"""The Registry: one app's parsed metadata, immutable, with its lookups computed once.

A Registry is built from the stored metadata rows (`Registry.build`) and replaced as a whole when
metadata changes; requests keep the snapshot they started with. Everything a request needs —
an entity by name, the relations from or to an entity, the relation an include or nested-write key
names — is a dictionary lookup here. The `with_*`/`without_*` methods return new registries, so
the admin layer can check a change against "the metadata as it would be" before saving it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeVar

from rocketd.metadata.model import Entity, Relation, RelationRef
from rocketd.metadata.parse import MetadataError, parse_entity, parse_relation

_Key = tuple[str, str]  # (entity name, include / nested-write key)
_Parsed = TypeVar("_Parsed", Entity, Relation)


@dataclass(frozen=True)
class Registry:
    """Entities and relations of one app, keyed and ordered by name.

    `problems` lists the stored rows `build` had to skip (one line each); it is carried over
    unchanged by the `with_*`/`without_*` methods.
    """

    entities: Mapping[str, Entity] = field(default_factory=dict)
    relations: Mapping[str, Relation] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    # Lookups derived in __post_init__; not part of the constructor or of equality.
    _outgoing: Mapping[str, tuple[Relation, ...]] = field(init=False, repr=False, compare=False)
    _incoming: Mapping[str, tuple[Relation, ...]] = field(init=False, repr=False, compare=False)
    _read_refs: Mapping[_Key, RelationRef] = field(init=False, repr=False, compare=False)
    _write_refs: Mapping[_Key, RelationRef] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        entities = MappingProxyType(dict(sorted(self.entities.items())))
        relations = MappingProxyType(dict(sorted(self.relations.items())))
        outgoing: dict[str, list[Relation]] = {}
        incoming: dict[str, list[Relation]] = {}
        for relation in relations.values():
            outgoing.setdefault(relation.source, []).append(relation)
            incoming.setdefault(relation.target, []).append(relation)
        read_refs = _resolution_table(relations.values())
        write_refs = {key: ref for key, ref in read_refs.items() if ref.forward}
        object.__setattr__(self, "entities", entities)
        object.__setattr__(self, "relations", relations)
        object.__setattr__(self, "problems", tuple(self.problems))
        object.__setattr__(
            self, "_outgoing", MappingProxyType({k: tuple(v) for k, v in outgoing.items()})
        )
        object.__setattr__(
            self, "_incoming", MappingProxyType({k: tuple(v) for k, v in incoming.items()})
        )
        object.__setattr__(self, "_read_refs", MappingProxyType(read_refs))
        object.__setattr__(self, "_write_refs", MappingProxyType(write_refs))

    # ---------------------------------------------------------------------------- lookups

    def entity(self, name: str) -> Entity | None:
        return self.entities.get(name)

    def relation(self, name: str) -> Relation | None:
        return self.relations.get(name)

    def relations_from(self, entity: str) -> tuple[Relation, ...]:
        """Relations whose source is `entity`, ordered by name."""
        return self._outgoing.get(entity, ())

    def relations_to(self, entity: str) -> tuple[Relation, ...]:
        """Relations whose target is `entity`, ordered by name."""
        return self._incoming.get(entity, ())

    def resolve(self, entity: str, name: str, *, for_write: bool = False) -> RelationRef | None:
        """The relation an include or nested-write key `name` on `entity` refers to.

        Rules (metadata.md "Resolving a name to a relation"), first match wins:
        1. the relation called `name` that has `entity` as source or target (a relation from an
           entity to itself counts as forward);
        2. a relation from `entity` to the entity called `name` (forward), else one from the
           entity called `name` to `entity` (reverse); several candidates: forward first, then
           the smallest relation name;
        3. the relation called `{entity}_{name}`.
        With `for_write`, a key that resolves to a reverse relation is no relation at all (nested
        writes only go from source to target).
        """
        refs = self._write_refs if for_write else self._read_refs
        return refs.get((entity, name))

    # ------------------------------------------------------------------- derived registries

    def with_entity(self, entity: Entity) -> Registry:
        """This registry with `entity` added, or replacing the entity of the same name."""
        return Registry({**self.entities, entity.name: entity}, self.relations, self.problems)

    def without_entity(self, name: str) -> Registry:
        """This registry without the entity `name` and without every relation touching it."""
        entities = {k: v for k, v in self.entities.items() if k != name}
        relations = {k: r for k, r in self.relations.items() if name not in (r.source, r.target)}
        return Registry(entities, relations, self.problems)

    def with_relation(self, relation: Relation) -> Registry:
        """This registry with `relation` added, or replacing the relation of the same name."""
        return Registry(self.entities, {**self.relations, relation.name: relation}, self.problems)

    def without_relation(self, name: str) -> Registry:
        relations = {k: r for k, r in self.relations.items() if k != name}
        return Registry(self.entities, relations, self.problems)

    # ------------------------------------------------------------------------------ loading

    @classmethod
    def build(
        cls,
        entity_rows: Iterable[tuple[str, Any]],
        relation_rows: Iterable[tuple[str, Any]],
    ) -> Registry:
        """A registry from stored rows `(name, definition)`; a definition is a dict or its JSON
        text. Never raises: a row that does not parse, or a relation whose source or target
        entity is missing, is left out and described in `problems`. The row's name wins over a
        different `name` inside its definition (other metadata refers to the row name)."""
        problems: list[str] = []
        entities = {e.name: e for e in _parse_rows(entity_rows, parse_entity, "entity", problems)}
        relations: dict[str, Relation] = {}
        for relation in _parse_rows(relation_rows, parse_relation, "relation", problems):
            missing = [
                f"{end} entity not found: {entity}"
                for end, entity in (("source", relation.source), ("target", relation.target))
                if entity not in entities
            ]
            if missing:
                problems.append(f'relation "{relation.name}" skipped: {"; ".join(missing)}')
                continue
            relations[relation.name] = relation
        return cls(entities, relations, tuple(problems))


def _parse_rows(
    rows: Iterable[tuple[str, Any]],
    parse: Callable[[object], _Parsed],
    kind: str,
    problems: list[str],
) -> list[_Parsed]:
    """Parse every row; a row that fails is reported in `problems` and left out."""
    parsed: list[_Parsed] = []
    for name, definition in rows:
        try:
            parsed.append(parse(_definition_object(name, definition)))
        except (ValueError, MetadataError) as exc:
            problems.append(f'{kind} "{name}" skipped: {exc}')
    return parsed


def _definition_object(name: str, definition: Any) -> Any:
    """The stored definition as a JSON object carrying the row's name (ValueError if it is not
    JSON text / an object)."""
    if isinstance(definition, str | bytes | bytearray | memoryview):
        try:
            text = definition if isinstance(definition, str) else bytes(definition).decode()
            definition = json.loads(text)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
            raise ValueError(f"definition is not valid JSON ({exc})") from exc
    if not isinstance(definition, dict):
        raise ValueError("definition is not a JSON object")
    return {**definition, "name": name} if name else definition


def _resolution_table(relations: Iterable[Relation]) -> dict[_Key, RelationRef]:
    """Every (entity, key) -> RelationRef the resolution rules produce, computed up front.

    Lower-priority rules are written first so that higher ones overwrite them.
    """
    relations = list(relations)
    table: dict[_Key, RelationRef] = {}

    # Rule 3: the relation named "{entity}_{key}".
    for relation in relations:
        for entity in {relation.source, relation.target}:
            prefix = f"{entity}_"
            if relation.name.startswith(prefix) and len(relation.name) > len(prefix):
                suffix = relation.name[len(prefix) :]
                table[(entity, suffix)] = RelationRef(relation, relation.source == entity)

    # Rule 2: the other entity's name, forward before reverse, then by relation name.
    best: dict[_Key, tuple[tuple[bool, str], RelationRef]] = {}
    for relation in relations:
        candidates = (
            ((relation.source, relation.target), True),
            ((relation.target, relation.source), False),
        )
        for key, forward in candidates:
            rank = (not forward, relation.name)
            current = best.get(key)
            if current is None or rank < current[0]:
                best[key] = (rank, RelationRef(relation, forward))
    for key, (_, ref) in best.items():
        table[key] = ref

    # Rule 1: the relation's own name, from either end.
    for relation in relations:
        table[(relation.source, relation.name)] = RelationRef(relation, True)
        if relation.target != relation.source:
            table[(relation.target, relation.name)] = RelationRef(relation, False)
    return table


EMPTY_REGISTRY: Final = Registry()
