"""Blocking checks stop the chain: a broken label map never reaches training."""

import dagster as dg
import pandas as pd

from snake_assets.core.labels import LabelMap
from snake_assets.definitions import defs


def test_non_contiguous_label_map_blocks_training(snake_env, monkeypatch):
    original = LabelMap.to_frame

    def shifted(self) -> pd.DataFrame:
        # The paper's failure mode in table form: labels that are not 0..K-1.
        frame = original(self)
        frame["label"] = frame["label"] + 1
        return frame

    monkeypatch.setattr(LabelMap, "to_frame", shifted)
    job = defs().resolve_job_def("ingest_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not result.success
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert not evaluations["labels_are_contiguous"].passed
        assert "0.." in evaluations["labels_are_contiguous"].metadata["problems"].value
        training = defs().resolve_job_def("training_job").execute_in_process(instance=instance, raise_on_error=False)
        assert not training.success
        assert not training.asset_materializations_for_node("species_head")
