"""Declarative automation: a change travels down the chain label map -> head -> scores -> submission.

Each downstream asset is *triggered* by one upstream step of the chain and only *reads*
its other dependencies, so nothing runs out of order or on stale inputs:

- ``species_label_map`` follows its metadata (``eager``);
- ``species_head`` retrains when the label map or any embedding partition changed, once
  no partition is missing or still being embedded (a sensor-launched backfill counts as in
  progress) and every blocking check upstream passed: a failing label-map check stops it;
- ``validation_predictions`` follows the head, ``validation_scores`` the predictions,
  ``competition_submission`` the scores; new embeddings or a new venomous list alone do
  not re-score an old head.

``automation_sensor`` is the daemon side: it evaluates these conditions (running by
default, so ``dagster-daemon`` / ``dagster dev`` needs no manual switch).
"""

import dagster as dg

AUTOMATION_INTERVAL_S = 15


def after(*upstream: str) -> dg.AutomationCondition:
    """``eager()`` triggered only by updates of ``upstream``, and only when all upstream blocking checks passed."""
    trigger = dg.AutomationCondition.any_deps_updated().allow(dg.AssetSelection.assets(*upstream))
    condition = dg.AutomationCondition.eager().replace("any_deps_updated", trigger)
    return (condition & dg.AutomationCondition.all_deps_blocking_checks_passed()).with_label(
        f"after {' or '.join(upstream)}, blocking checks passed"
    )


LABEL_MAP = dg.AutomationCondition.eager()
RETRAIN = after("species_label_map", "image_embeddings")
PREDICT = after("species_head")
SCORE = after("validation_predictions")
SUBMIT = after("validation_scores")

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=AUTOMATION_INTERVAL_S,
    description="Evaluates the assets' automation conditions: retrain, re-score and rebuild the submission after a change.",
)
