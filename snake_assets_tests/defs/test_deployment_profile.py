"""Deployment profiles: the local and Kubernetes executors, the GPU step's Kubernetes Job, the deploy files.

No cluster here: the k8s profile is checked by loading its definitions, validating their
run config, rendering the Kubernetes Job dagster-k8s would create for each step, and
validating ``deploy/dagster-k8s.yaml`` against the Dagster classes it names.
"""

import re
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_k8s import DagsterK8sJobConfig, K8sRunLauncher, construct_dagster_k8s_job
from dagster_k8s.job import get_user_defined_k8s_config
from dagster_postgres import DagsterPostgresStorage

from snake_assets.definitions import defs
from snake_assets.defs.deployment import profile

REPO = Path(__file__).resolve().parents[2]
JOBS = ("ingest_job", "embedding_job", "training_job")


def _definitions(monkeypatch, profile: str | None) -> dg.Definitions:
    if profile is None:
        monkeypatch.delenv("SNAKE_DEPLOYMENT", raising=False)
    else:
        monkeypatch.setenv("SNAKE_DEPLOYMENT", profile)
    return defs()


def _step_pod(d: dg.Definitions, asset: str):
    """The pod spec of the Kubernetes Job that dagster-k8s builds for ``asset``'s step."""
    config = get_user_defined_k8s_config(d.resolve_assets_def(asset).op.tags)
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="registry.example/snake-assets:0.1.0", dagster_home="/opt/dagster/dagster_home"),
        args=["dagster", "api", "execute_step"], job_name=f"dagster-step-{asset}", user_defined_k8s_config=config,
        pod_name=f"dagster-step-{asset}", component="step_worker",
    )
    return job.spec.template.spec


@pytest.mark.parametrize(("profile", "executor"), [(None, "in_process"), ("local", "in_process"), ("k8s", "k8s")])
def test_profile_selects_the_executor_of_every_job(monkeypatch, profile, executor):
    for var in ("SNAKE_DATA_DIR", "SNAKE_HOME", "SNAKE_BACKBONE", "SNAKE_DEVICE"):
        monkeypatch.setenv(var, "unused")  # resolved by run config validation, never opened
    monkeypatch.setenv("SNAKE_BATCH_SIZE", "8")
    d = _definitions(monkeypatch, profile)
    for name in JOBS:
        job = d.resolve_job_def(name)
        assert job.executor_def.name == executor
        assert dg.validate_run_config(job) is not None  # the profile's executor config is valid for it


def test_unknown_profile_is_refused(monkeypatch):
    monkeypatch.setenv("SNAKE_DEPLOYMENT", "gke")
    with pytest.raises(ValueError, match="SNAKE_DEPLOYMENT='gke': expected one of local, k8s"):
        profile()
    with pytest.raises(Exception, match="deployment.py"):
        defs()  # the code location refuses to load rather than fall back to another executor


def test_embedding_step_pod_requests_a_gpu_on_a_gpu_node(monkeypatch):
    d = _definitions(monkeypatch, "k8s")
    pod = _step_pod(d, "image_embeddings")
    (container,) = pod.containers
    assert container.resources.limits == {"nvidia.com/gpu": "1"}
    assert container.resources.requests == {"nvidia.com/gpu": "1"}
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert [(t.key, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "NoSchedule")]
    assert container.image == "registry.example/snake-assets:0.1.0"


@pytest.mark.parametrize("asset", ["species_head", "image_manifest", "competition_submission"])
def test_other_steps_stay_off_the_gpu_nodes(monkeypatch, asset):
    pod = _step_pod(_definitions(monkeypatch, "k8s"), asset)
    assert pod.node_selector is None
    assert not (pod.containers[0].resources and pod.containers[0].resources.limits)


def _validate(schema, config: dict) -> None:
    """Validate ``config`` against a Dagster config schema through a throwaway op's run config."""

    @dg.op(config_schema=schema)
    def probe(): ...

    @dg.job
    def check():
        probe()

    result = dg.validate_run_config(check, {"ops": {"probe": {"config": config}}})
    assert result["ops"]["probe"]["config"]


def test_k8s_instance_yaml_is_valid_for_postgres_and_the_k8s_launcher(monkeypatch):
    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(var, "x")
    instance = yaml.safe_load((REPO / "deploy" / "dagster-k8s.yaml").read_text())
    _validate(DagsterPostgresStorage.config_type(), instance["storage"]["postgres"])
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    _validate(K8sRunLauncher.config_type(), launcher["config"])
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance["concurrency"]["pools"]["default_limit"] >= 1


def test_helm_values_deploy_this_code_location_with_the_k8s_profile():
    values = yaml.safe_load((REPO / "deploy" / "helm-values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    module = re.search(r'^module_name = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", module, "--attribute", "defs"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["SNAKE_DEPLOYMENT"] == "k8s"
    assert {"SNAKE_DATA_DIR", "SNAKE_HOME", "SNAKE_BACKBONE", "SNAKE_DEVICE", "SNAKE_BATCH_SIZE"} <= set(env)
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]  # step pods get the env and volumes
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["concurrency"]["enabled"] and values["concurrency"]["pools"]["defaultLimit"] >= 1
    assert ".[k8s]" in (REPO / "Dockerfile").read_text()
