"""Schema version written into every output; bump on any change of the on-disk layout."""

SCHEMA_VERSION = 2
