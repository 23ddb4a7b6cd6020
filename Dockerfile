# chatsite: one image for web (daphne), worker and beat (celery); see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN useradd --system --uid 10001 --no-create-home app \
    && chmod +x scripts/docker-entrypoint.sh
USER app

EXPOSE 8000
ENTRYPOINT ["scripts/docker-entrypoint.sh"]
# daphne, configured in one place (chatsite/server.py).
CMD ["python", "-m", "chatsite.server", "--bind", "0.0.0.0", "--port", "8000"]
