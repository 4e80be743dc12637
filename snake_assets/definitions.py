"""The snake_assets code location: every definition under ``snake_assets.defs``."""

import dagster as dg

import snake_assets.defs


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_defs(defs_root=snake_assets.defs)
