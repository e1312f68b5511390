# One Triton replica: NVIDIA's Triton container + this project's model repository and the
# packages its Python-backend models import (body_shape: numpy + onnxruntime on CPU hosts;
# body_mesh: torch + anny + bodyshape itself). Build from the repository root:
#   docker build -f deploy/triton.Dockerfile -t bodyshape-triton:24.12 .
# 24.12 is the first Triton container on Ubuntu 24.04 with Python 3.12 (the project needs
# Python >= 3.11; the 24.10 container has 3.10). On GPU hosts build
# model_repository/body_shape/1/model.plan first, with the TensorRT container of the SAME
# release (nvcr.io/nvidia/tensorrt:24.12-py3, trtexec line in docs/serving.md): a plan only
# runs on the TensorRT version and GPU model it was built for.
FROM nvcr.io/nvidia/tritonserver:24.12-py3

WORKDIR /opt/bodyshape
COPY pyproject.toml README.md ./
COPY bodyshape ./bodyshape
COPY training ./training
COPY export ./export
COPY demo ./demo
# The system Python is the one Triton's Python-backend stub runs (PEP 668: install into it
# on purpose; the container is this service's only tenant).
RUN python3 -m pip install --no-cache-dir --break-system-packages ".[export]"
COPY model_repository /models

# Anny builds its cache on first use (~80 s on 2 cores): do it at build time, not at every start.
ENV ANNY_CACHE_DIR=/opt/anny-cache
RUN python3 -c "from bodyshape.body_model import get_body_model; get_body_model()"

EXPOSE 8000 8001 8002
# --model-config-name: tensorrt_plan on GPU hosts with a built plan, gpu for ONNX Runtime CUDA
# (needs onnxruntime-gpu), empty for the CPU default. Metrics (Prometheus) on 8002.
ENV TRITON_CONFIG_NAME=tensorrt_plan
CMD ["sh", "-c", "exec tritonserver --model-repository=/models ${TRITON_CONFIG_NAME:+--model-config-name=$TRITON_CONFIG_NAME} --allow-metrics=true --metrics-port=8002 --exit-timeout-secs=10"]
