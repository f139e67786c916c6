# SelfBack FHIR server. Not built on the development machines (no Docker engine there);
# see docs/DEPLOYMENT.md. Configuration comes from the environment (SELFBACK_*).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SELFBACK_DATA_DIR=/var/lib/selfback

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY fhir_server ./fhir_server
COPY plan_engine ./plan_engine
COPY terminology ./terminology
COPY profiles ./profiles
COPY mappings ./mappings
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --system --uid 10001 --home-dir /var/lib/selfback --create-home selfback

USER selfback
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["selfback", "serve", "--host", "0.0.0.0", "--port", "8080"]
