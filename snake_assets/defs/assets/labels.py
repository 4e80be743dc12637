"""Labels: the one mapping between SnakeCLEF class ids and contiguous training labels."""

import dagster as dg

from snake_assets.core.labels import LabelMap, build_label_map
from snake_assets.defs import automation
from snake_assets.defs.resources import LakeResource

TABLE = "species_label_map"


def load_label_map(lake: LakeResource) -> LabelMap:
    """The stored label map (raises ``LabelMapError`` when the table is inconsistent)."""
    with lake.tables() as db:
        return LabelMap.from_frame(db.read(TABLE))


@dg.asset(
    group_name="labels", kinds={"duckdb"}, deps=["raw_train_metadata", "venomous_species"], automation_condition=automation.LABEL_MAP
)
def species_label_map(lake: LakeResource) -> dg.MaterializeResult:
    """``class_id -> label`` (0..K-1, ascending class_id) with binomial name and venomous flag."""
    with lake.tables() as db:
        train = db.read("raw_train_metadata")
        venomous = db.read("venomous_species")
    label_map = build_label_map(train, venomous)
    frame = label_map.to_frame()
    with lake.tables() as db:
        db.replace({TABLE: frame})
    return dg.MaterializeResult(
        metadata={
            "num_classes": label_map.num_classes,
            "venomous_classes": int(frame["venomous"].sum()),
            "class_id_range": f"{min(label_map.class_ids)}..{max(label_map.class_ids)}",
            "fingerprint": label_map.fingerprint(),
            "class_set_fingerprint": label_map.class_set_fingerprint(),
            "label_map": dg.MetadataValue.md(frame.to_markdown(index=False)),
        }
    )
