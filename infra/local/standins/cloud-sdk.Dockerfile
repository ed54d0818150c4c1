# STAND-IN for gcr.io/google.com/cloudsdktool/google-cloud-cli:*-emulators (README.md here): the Cloud
# SDK installed on this machine trimmed to gcloud, its bundled Python and the Pub/Sub emulator, plus Java
# and curl (the compose health check).
FROM churnflow-standin/bookworm:base
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless curl \
    && rm -rf /var/lib/apt/lists/*
COPY google-cloud-sdk /usr/lib/google-cloud-sdk
ENV PATH=/usr/lib/google-cloud-sdk/bin:$PATH \
    CLOUDSDK_CORE_DISABLE_PROMPTS=1
