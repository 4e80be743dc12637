# The snake_assets image: the code location (gRPC server), the run pods and the step pods
# (embedding steps on GPU nodes) all run it. Build it, push it, and name it in
# deploy/helm-values.yaml:
#
#   docker build -t REGISTRY/snake-assets:0.1.0 .
#   docker push REGISTRY/snake-assets:0.1.0
#
# TORCH_INDEX picks the torch build: the CUDA wheels bundle the CUDA runtime, the GPU node
# provides the driver (NVIDIA device plugin / GPU operator). Use the CPU index for a CPU-only image.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    SNAKE_DEPLOYMENT=k8s \
    HF_HUB_OFFLINE=1

WORKDIR /opt/snake_assets
COPY constraints/ constraints/
COPY pyproject.toml README.md ./
COPY snake_assets/ snake_assets/

# torch first (the tested version, from the chosen index); then the package and the `k8s`
# extra (dagster-k8s, dagster-postgres), pinned to the tested release set.
RUN pip install "torch==$(sed -n 's/^torch==//p' constraints/torch-cpu.txt)" --index-url "${TORCH_INDEX}" \
    && pip install -c constraints/base.txt ".[k8s]" \
    && mkdir -p "${DAGSTER_HOME}"

# Code location: `dagster api grpc -m snake_assets.definitions -a defs -p 3030` (set by the chart).
EXPOSE 3030
