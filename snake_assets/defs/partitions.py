"""Embedding shards: one dynamic partition per hash bucket of images, added by ``image_manifest``."""

import dagster as dg

image_shards = dg.DynamicPartitionsDefinition(name="image_shards")
