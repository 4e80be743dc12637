"""Deployment profiles: where the steps of a run execute.

``SNAKE_DEPLOYMENT`` picks the profile when the code location loads (as Dagster's
``project_fully_featured`` does with ``DAGSTER_DEPLOYMENT``); it is the one setting read
then, because an executor is part of the definitions, not of a resource:

- ``local`` (default): every step of a run in the run's own process. A step process would
  re-import torch, transformers and Lightning (seconds per step) while the ``gpu`` pool
  serialises the GPU work anyway; parallelism comes from concurrent runs (the run queue).
- ``k8s``: ``dagster_k8s.k8s_job_executor``, one Kubernetes Job per step. The embedding
  step asks for a GPU through its ``dagster-k8s/config`` tag (:data:`GPU_STEP_K8S_CONFIG`),
  so only it lands on a GPU node; instance storage is Postgres (``deploy/dagster-k8s.yaml``).
"""

import os

import dagster as dg

PROFILE_VAR = "SNAKE_DEPLOYMENT"
PROFILES = ("local", "k8s")

GPU_STEP_K8S_CONFIG = {
    "container_config": {"resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}},
    "pod_spec_config": {
        "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}
"""Per-step Kubernetes config of GPU assets: one GPU, a GPU node (label set by NVIDIA's GPU
feature discovery), and the toleration for the taint GPU node pools usually carry."""

K8S_EXECUTOR_CONFIG = {
    "max_concurrent": 8,
    "step_k8s_config": {"container_config": {"resources": {"requests": {"cpu": "1", "memory": "4Gi"}}}},
}
"""Defaults for every step pod; image, namespace and env come from the run launcher (Helm)."""


def profile() -> str:
    """The selected profile; raises on an unknown name so a typo never deploys the wrong executor."""
    name = os.environ.get(PROFILE_VAR, "local").strip() or "local"
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_VAR}={name!r}: expected one of {', '.join(PROFILES)}")
    return name


def executor_for(name: str) -> dg.ExecutorDefinition:
    """The executor of a profile."""
    if name == "k8s":
        from dagster_k8s import k8s_job_executor  # optional dependency: the `k8s` extra

        return k8s_job_executor.configured(K8S_EXECUTOR_CONFIG)
    return dg.in_process_executor


@dg.definitions
def deployment() -> dg.Definitions:
    return dg.Definitions(executor=executor_for(profile()))
