# LedgerLens workbench. Mirrors `make install` + `make run` (not buildable on the dev machines: no Docker engine).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends make chromium poppler-utils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt constraints.txt Makefile ./
# torch first, from the CPU index: any other resolution pulls the CUDA build.
RUN python -m venv .venv \
    && .venv/bin/pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && .venv/bin/pip install --no-cache-dir -r requirements.txt -c constraints.txt \
    && touch .venv/.install-stamp
COPY . .
# the environment is installed above: keep make from reinstalling at start
RUN touch .venv/.install-stamp
ENV LEDGERLENS_HOME=/data \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0
VOLUME /data
EXPOSE 8501
CMD ["make", "run"]
