# Azurine's image, for both roles: `--role gateway` (the API, no batch worker) and `--role worker` (batches and
# fine-tuning, no listener), sharing one PostgreSQL database and one Redis. Models are not in the image: mount a
# volume at /models and fill it once with `azurine models install`, or serve them from model servers
# (docs/fleet.md). Build: docker build -t azurine .

# the Studio's bundle, package data of the Python package
FROM node:20-bookworm-slim AS studio
WORKDIR /build/studio
COPY studio/package.json studio/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY studio/ ./
RUN mkdir -p ../src/azurine/studio && npm run build --silent

FROM python:3.11-slim-bookworm AS build
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        build-essential cmake git && rm -rf /var/lib/apt/lists/*
WORKDIR /build
RUN python -m venv /opt/azurine && /opt/azurine/bin/pip install --quiet --upgrade pip \
    # the CPU build of torch: a bare `torch` would be the CUDA build
    && /opt/azurine/bin/pip install --quiet "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY src/ ./src/
COPY --from=studio /build/src/azurine/studio/dist/ ./src/azurine/studio/dist/
# llama.cpp built portably: its native build crashes on CPUs with AMX at the first decoded token
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
RUN /opt/azurine/bin/pip install --quiet . && /opt/azurine/bin/python -m compileall -q /opt/azurine >/dev/null

FROM python:3.11-slim-bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libgomp1 espeak-ng && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/azurine --create-home azurine \
    && mkdir -p /models && chown azurine /models
COPY --from=build /opt/azurine /opt/azurine
ENV PATH=/opt/azurine/bin:$PATH \
    AZURINE_DATA_DIR=/var/lib/azurine \
    AZURINE_MODELS_DIR=/models \
    PYTHONUNBUFFERED=1
USER 10001
WORKDIR /var/lib/azurine
EXPOSE 8080 9090
ENTRYPOINT ["azurine"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--role", "gateway", "--metrics-listen", "0.0.0.0:9090"]
