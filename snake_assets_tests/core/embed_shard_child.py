"""Subprocess body for the resume tests: embed one shard, printing ``done N`` after every persisted batch.

``python -m snake_assets_tests.core.embed_shard_child ROWS_JSON LAKE MODEL_DIR``; the last line is the
report as JSON. Run in a fresh process so a test can SIGKILL it mid-shard.
"""

import json
import sys
from pathlib import Path

import pandas as pd
import torch

from snake_assets.core.backbone import describe_backbone, load_backbone
from snake_assets.core.shard_embedding import EngineSettings, embed_shard, shard_cache

SETTINGS = EngineSettings(batch_size=4, num_workers=1)


def main() -> None:
    rows_json, lake, model = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    rows = pd.read_json(rows_json, orient="records", dtype={"content_hash": str})
    spec = describe_backbone(model)
    report = embed_shard(
        rows, out_path=lake / "bb" / "shard-000.parquet", cache=shard_cache(lake / "bb", spec, torch.device("cpu"), SETTINGS),
        spec=spec, load=lambda: load_backbone(model, spec=spec), settings=SETTINGS,
        progress=lambda done, total, seconds: print(f"done {done}", flush=True),
    )
    print(json.dumps({"computed": report.computed, "reused": report.reused, "stored": report.stored}), flush=True)


if __name__ == "__main__":
    main()
