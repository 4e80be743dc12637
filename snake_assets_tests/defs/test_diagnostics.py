"""``embedding_projection`` and the pictures of ``validation_scores`` on a real instance, DuckDB file and JPEGs.

The ingest job runs for real on the demo release; the embedding shards are then
written with controlled vectors (one recipe that separates species, one that is
noise, and an extra recipe the code must discover from the files), so the
separability numbers have a known right answer.
"""

import base64
import json
import re
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from snake_assets.core.embedding_store import write_shard
from snake_assets.core.scoring import score_submission
from snake_assets.core.warehouse import replace_table
from snake_assets.definitions import defs
from snake_assets.defs.resources import BackboneResource
from snake_assets_tests.conftest import set_snake_env

PROJECTION = dg.AssetKey("embedding_projection")
SCORES = dg.AssetKey("validation_scores")
RECIPES = {"cls": 32, "cls_last4": 48, "dct8x8": 64}


def _materialize(instance, key: dg.AssetKey, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    job = defs().resolve_implicit_job_def_def_for_assets([key])
    return job.execute_in_process(instance=instance, asset_selection=[key], run_config=run_config or {}, raise_on_error=False)


def _table(lake: Path, name: str) -> pd.DataFrame:
    with duckdb.connect(str(lake / "warehouse.duckdb"), read_only=True) as conn:
        return conn.execute(f"SELECT * FROM {name}").df()


def _write_controlled_shards(lake: Path, slug: str, manifest: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    readable = manifest[manifest["readable"]].sort_values("row_id")
    centres = {r: {c: rng.normal(size=w) * 4 for c in readable["class_id"].unique()} for r, w in RECIPES.items()}
    for shard, rows in readable.groupby("shard"):
        vectors = {
            "cls": np.stack([centres["cls"][c] for c in rows["class_id"]]) + rng.normal(size=(len(rows), 32)),
            "cls_last4": np.stack([centres["cls_last4"][c] for c in rows["class_id"]]) + rng.normal(size=(len(rows), 48)),
            "dct8x8": rng.normal(size=(len(rows), 64)),  # carries no species information
        }
        write_shard(
            lake / "embeddings" / slug / f"{shard}.parquet", image_keys=rows["image_key"].tolist(),
            content_hashes=rows["content_hash"].tolist(), row_ids=rows["row_id"].astype(int).tolist(), vectors=vectors,
        )


@pytest.fixture(scope="module")
def lake_instance(tmp_path_factory, demo_release, tiny_backbone):
    """(instance, lake, result of the default projection) after a real ingest and controlled shards."""
    mp = pytest.MonkeyPatch()
    lake = tmp_path_factory.mktemp("lake")
    set_snake_env(mp, demo_release, tiny_backbone, lake)
    with dg.instance_for_test() as instance:
        assert defs().resolve_job_def("ingest_job").execute_in_process(instance=instance).success
        backbone = BackboneResource(model=str(tiny_backbone))
        _write_controlled_shards(lake, backbone.slug(backbone.describe()), _table(lake, "image_manifest"))
        result = _materialize(instance, PROJECTION)
        assert result.success
        yield instance, lake, result
    mp.undo()


def _metadata(result) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node("embedding_projection")[0].metadata.items()}


def test_separability_ranks_the_informative_recipes_above_noise(lake_instance):
    _, _, result = lake_instance
    meta = _metadata(result)
    assert meta["recipes"] == ["cls", "cls_last4", "dct8x8"]  # read from the shard files
    assert meta["knn_accuracy_cls"] > 0.9 and meta["knn_accuracy_cls_last4"] > 0.9
    assert meta["knn_accuracy_dct8x8"] < 0.4  # six species: chance is 1/6
    assert meta["silhouette_cls"] > 0.2 > meta["silhouette_dct8x8"]
    assert meta["best_recipe"] in ("cls", "cls_last4")
    assert meta["species"] == 6 and meta["subset"] == "the configured species"
    assert meta["dagster/row_count"] == sum(meta["species_counts"].values()) == 6 * 30  # train + val images
    assert meta["partitions"] == ["shard-000", "shard-001", "shard-002", "shard-003"]
    rows = [line for line in meta["separability"].splitlines() if line.startswith("| ") and "recipe" not in line]
    assert [r.split("|")[1].strip() for r in rows] == pd.read_csv(Path(meta["pngs"]["cls"]).parent / "separability.csv")["recipe"].tolist()
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "projection_covers_species_subset" and check.passed


def test_pictures_are_on_disk_and_inline(lake_instance):
    _, lake, result = lake_instance
    meta = _metadata(result)
    for recipe, path in meta["pngs"].items():
        png = Path(path).read_bytes()
        assert Path(path).parent.parent == lake / "diagnostics"
        assert Image.open(Path(path)).size[0] > 300
        inline = re.search(r"base64,([A-Za-z0-9+/=]+)\)", meta[f"umap_{recipe}"]).group(1)
        assert base64.b64decode(inline) == png


def test_interactive_page_has_a_thumbnail_for_every_point(lake_instance):
    _, _, result = lake_instance
    meta = _metadata(result)
    page = Path(meta["interactive_projection"]).read_text()
    assert meta["interactive_projection_url"].startswith("file://")
    thumbs = json.loads(re.search(r"const THUMBS = (\[.*?\]);", page).group(1))
    assert len(thumbs) == meta["dagster/row_count"]
    assert all(t.startswith("data:image/jpeg;base64,") for t in thumbs)


def test_config_picks_the_most_frequent_species_and_caps_the_sample(lake_instance):
    instance, _, _ = lake_instance
    config = {"ops": {"embedding_projection": {"config": {"top_n": 3, "max_points": 30, "seed": 1, "thumbnail_px": 0}}}}
    result = _materialize(instance, PROJECTION, config)
    assert result.success
    meta = _metadata(result)
    assert meta["species"] == 3 and meta["subset"] == "the 3 most frequent species"
    assert meta["dagster/row_count"] == 30 and set(meta["species_counts"].values()) == {10}


def test_validation_scores_show_the_venom_confusion_of_the_chosen_rule(lake_instance):
    instance, lake, _ = lake_instance
    manifest = _table(lake, "image_manifest")
    gt = manifest[manifest["split"] == "val"].sort_values("row_id").drop_duplicates("observation_id")
    wrong = gt["class_id"].to_numpy().copy()
    wrong[::4] = np.roll(wrong[::4], 1)  # a quarter of the observations get another observation's species
    preds = []
    for aggregation, decision, class_ids in [("mode_first", "argmax", wrong), ("mean_prob", "argmax", np.roll(wrong, 3))]:
        preds.append(pd.DataFrame({
            "aggregation": aggregation, "decision": decision, "observation_id": gt["observation_id"].astype(str),
            "class_id": class_ids.astype("int64"), "label": 0, "n_images": 1, "fallback": False,
        }))
    with duckdb.connect(str(lake / "warehouse.duckdb")) as conn:
        replace_table(conn, "validation_predictions", pd.concat(preds, ignore_index=True))
    result = _materialize(instance, SCORES)
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("validation_scores")[0].metadata.items()}
    assert meta["chosen_rule"] == "mode_first+argmax"
    venomous = _table(lake, "venomous_species")
    official = score_submission(gt[["observation_id", "class_id"]], preds[0], set(venomous.loc[venomous["MIVS"] == 1, "class_id"]))
    table = [[c.strip() for c in line.split("|")[1:-1]] for line in meta["venom_outcomes"].splitlines()[2:]]
    v_ids = set(venomous.loc[venomous["MIVS"] == 1, "class_id"])
    n_v = int(gt["class_id"].isin(v_ids).sum())
    assert table == [
        ["harmless", str(len(gt) - n_v - official["n00"] - official["n01"]), str(official["n00"]), str(official["n01"])],
        ["venomous", str(n_v - official["n11"] - official["n10"]), str(official["n11"]), str(official["n10"])],
    ]
    assert official["n00"] + official["n01"] + official["n10"] + official["n11"] > 0
    png = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)\)", meta["venom_confusion"]).group(1))
    assert png[:4] == b"\x89PNG"
    assert [c.strip() for c in meta["scores"].splitlines()[0].split("|")[6:10]] == ["n00", "n01", "n10", "n11"]


def test_a_species_without_enough_vectors_is_left_out_and_the_check_says_so(lake_instance, tmp_path, monkeypatch):
    instance, lake, _ = lake_instance
    copy = tmp_path / "lake"
    shutil.copytree(lake, copy, ignore=shutil.ignore_patterns("diagnostics"))
    monkeypatch.setenv("SNAKE_HOME", str(copy))
    manifest = _table(copy, "image_manifest")
    python_regius = manifest.loc[manifest["image_path"].str.contains("Python_regius"), "image_key"]
    for path in (copy / "embeddings").glob("*/shard-*.parquet"):  # keep one Python regius vector at most
        table = pq.read_table(path)
        keys = table.column("image_key").to_pandas()
        drop = keys.isin(python_regius.iloc[1:])
        pq.write_table(table.filter(pa.array(~drop.to_numpy())), path)
    config = {"ops": {"embedding_projection": {"config": {"species": ["Python regius", "Micrurus fulvius", "Natrix natrix"]}}}}
    result = _materialize(instance, PROJECTION, config)
    assert result.success
    meta = _metadata(result)
    assert meta["species"] == 2 and set(meta["species_counts"]) == {"Micrurus fulvius", "Natrix natrix"}
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["species_left_out"].value == ["Python regius"]
