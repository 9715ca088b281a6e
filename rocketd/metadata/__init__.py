"""App metadata: the typed model (entities, fields, relations), parsing and validating it from
JSON, and the Registry that holds one app's metadata with its lookups."""

from rocketd.metadata.consistency import entity_problems_in, relation_problems_in
from rocketd.metadata.model import (
    AUTO_MODES,
    DELETED_AT,
    FETCH_MODES,
    FIELD_TYPES,
    NO_DEFAULT,
    ON_DELETE_POLICIES,
    OWNERSHIPS,
    PK_TYPES,
    RELATION_TYPES,
    WRITE_MODES,
    Entity,
    Field,
    PrimaryKey,
    Relation,
    RelationRef,
    SlugConfig,
)
from rocketd.metadata.parse import (
    IGNORED_UPSTREAM_KEYS,
    NAME_PATTERN,
    NAME_RULE,
    RESERVED_ENTITY_NAMES,
    MetadataError,
    is_valid_name,
    parse_entity,
    parse_relation,
)
from rocketd.metadata.registry import EMPTY_REGISTRY, Registry

__all__ = [
    "AUTO_MODES",
    "DELETED_AT",
    "EMPTY_REGISTRY",
    "FETCH_MODES",
    "FIELD_TYPES",
    "IGNORED_UPSTREAM_KEYS",
    "NAME_PATTERN",
    "NAME_RULE",
    "NO_DEFAULT",
    "ON_DELETE_POLICIES",
    "OWNERSHIPS",
    "PK_TYPES",
    "RELATION_TYPES",
    "RESERVED_ENTITY_NAMES",
    "WRITE_MODES",
    "Entity",
    "Field",
    "MetadataError",
    "PrimaryKey",
    "Registry",
    "Relation",
    "RelationRef",
    "SlugConfig",
    "entity_problems_in",
    "is_valid_name",
    "parse_entity",
    "parse_relation",
    "relation_problems_in",
]
