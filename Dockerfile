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
# Static files (the admin's, Swagger UI's) with hashed names and gzip copies, into STATIC_ROOT
# (/app/staticfiles), served by WhiteNoise from the web process. Collected here, so every container
# of this image serves the same files and none writes at start-up. The key exists only for this
# step: production settings refuse to load without one, and nothing here signs anything.
RUN DJANGO_DEBUG=false DJANGO_SECRET_KEY=collectstatic-build-step-only-not-a-secret \
    python manage.py collectstatic --noinput
RUN useradd --system --uid 10001 --no-create-home app \
    && chmod +x scripts/docker-entrypoint.sh
USER app

EXPOSE 8000
ENTRYPOINT ["scripts/docker-entrypoint.sh"]
# daphne, configured in one place (chatsite/server.py).
CMD ["python", "-m", "chatsite.server", "--bind", "0.0.0.0", "--port", "8000"]
