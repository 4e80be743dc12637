"""The code location loads, every job resolves, and the asset graph is the one we mean."""

import dagster as dg

from snake_assets.definitions import defs


def _graph():
    d = defs()
    graph = d.resolve_asset_graph()
    out = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        out[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitioned": node.partitions_def is not None,
            "pool": node.pools,
            "checks": sorted(c.name for c in node.check_keys),
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
        }
    return out


def test_jobs_resolve():
    d = defs()
    for name in ("ingest_job", "embedding_job", "training_job"):
        assert isinstance(d.resolve_job_def(name), dg.JobDefinition)


def test_asset_graph_snapshot(snapshot):
    assert _graph() == snapshot


def test_every_asset_says_what_it_is():
    d = defs()
    for spec in d.resolve_all_asset_specs():
        assert spec.description and len(spec.description) > 20, spec.key
