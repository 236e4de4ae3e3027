# appf worker image: one image for every runner profile (Dataflow custom container, the Flink /
# Spark SDK harness, Dask workers) and for `appf train`. CUDA base, Python 3.11, the Beam SDK
# harness boot binary of the pinned Beam, appf with its pinned dependencies, optional
# FoundationStereo / RoboEngine checkouts, and learned weights pre-fetched at pinned revisions so
# that workers never download (HF_HUB_OFFLINE=1).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/appf/worker:TAG .
#   docker build --build-arg WITH_FOUNDATION_STEREO=1 --build-arg WITH_ROBOENGINE=1 -t ... .
#   docker push REGION-docker.pkg.dev/PROJECT/appf/worker:TAG
#   appf reannotate --runner dataflow --image REGION-docker.pkg.dev/PROJECT/appf/worker:TAG ...
#
# Every `name==version` below must equal the project's pin (pyproject.toml, Makefile):
# tests/test_dockerfile.py parses both.

# The Beam SDK harness (boot binary) of the Beam version appf pins.
FROM apache/beam_python3.11_sdk:2.77.0 AS beam_sdk

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ARG DEBIAN_FRONTEND=noninteractive
# CUDA build of the pinned torch (the Makefile's CPU build is for CI only)
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG WITH_FOUNDATION_STEREO=0
ARG WITH_ROBOENGINE=0
# Weights fetched into the image (pinned revisions; `appf models list` shows them)
ARG PREFETCH_WEIGHTS="promptda-vitl moge-2-vitl-normal sam2.1-hiera-large"

RUN apt-get update && apt-get install -y --no-install-recommends \
        git ca-certificates curl libgl1 libglib2.0-0 libusb-1.0-0 libosmesa6 ffmpeg \
    && rm -rf /var/lib/apt/lists/*

# Python 3.11 (Ubuntu 22.04 ships 3.10) through uv's managed interpreters
COPY --from=ghcr.io/astral-sh/uv:0.9.5 /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN uv python install 3.11 && uv venv --python 3.11 /opt/venv

COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam

WORKDIR /opt/appf
COPY pyproject.toml README.md ./
COPY appf ./appf
RUN uv pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0 \
    && uv pip install ".[depth,train,masks]" \
    && uv pip install --no-deps dlr-moge==2.0.0 dlr-utils3d==1.3 \
    && uv pip freeze > /opt/appf/constraints.txt

# Optional model code without a package; installed under the constraints above so that their
# requirements never replace appf's pins (torch above all).
# numba kernels compiled into the image (cache keyed on this CPU; see appf/launch/warm_kernels.py
# for NUMBA_CPU_NAME=generic on mixed-CPU clusters)
RUN python -m appf.launch.warm_kernels
RUN if [ "$WITH_FOUNDATION_STEREO" = "1" ]; then \
        git clone https://github.com/NVlabs/FoundationStereo /opt/FoundationStereo \
        && git -C /opt/FoundationStereo checkout 6e88068 \
        && uv pip install -c /opt/appf/constraints.txt timm omegaconf einops trimesh joblib \
           imageio pandas open3d ; fi
RUN if [ "$WITH_ROBOENGINE" = "1" ]; then \
        git clone https://github.com/michaelyuancb/roboengine /opt/roboengine \
        && git -C /opt/roboengine checkout a6e6f6d \
        && uv pip install -c /opt/appf/constraints.txt -e /opt/roboengine ; fi
ENV APPF_FOUNDATION_STEREO_CODE=/opt/FoundationStereo APPF_ROBOENGINE_CODE=/opt/roboengine

# Weights at their pinned revisions, then offline for good (read at import by huggingface_hub)
ENV HF_HOME=/opt/hf APPF_WEIGHTS_DIR=/opt/hf/hub
RUN appf models fetch $PREFETCH_WEIGHTS
ENV HF_HUB_OFFLINE=1 MUJOCO_GL=osmesa

# Beam's SDK harness entry point (portable runners and Dataflow start workers through it)
ENTRYPOINT ["/opt/apache/beam/boot"]
