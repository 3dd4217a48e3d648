#!/bin/sh
# The periodic retrain, as the retrain CronJob runs it in the training image (and as anyone can run
# it in a checkout): snapshot the consented feedback from the service's database, point DVC at the
# shared remote, bring back the last lock file, `dvc repro` (only the stages whose code, parameters
# or inputs changed run; the export stage registers the new model in MLflow), push the outputs to
# the remote and keep the new lock file.
#   BITZERO_DATABASE_URL     the service's database, for `bitzero feedback export`   (optional)
#   DVC_REMOTE_URL           the DVC remote: s3://bucket/path, or a folder          (required)
#   DVC_REMOTE_ENDPOINT_URL  the endpoint of an S3-compatible store such as MinIO   (optional)
#   DVC_CACHE_DIR            the DVC cache folder                                   (optional)
#   DVC_LOCK_FILE            where dvc.lock is kept between runs                    (optional)
#   KEDRO_ENV                the Kedro environment the stages run in                (optional)
# Arguments go to `dvc repro` and `dvc push` (e.g. stage names).
#   BITZERO_RAW_DATA         the image's raw data, copied into data/01_raw          (optional)
set -eu
: "${DVC_REMOTE_URL:?must name the DVC remote, e.g. s3://bitzero-dvc/store}"
sh deploy/docker/raw_data.sh
# A full snapshot, not an increment: feedback that a user erased or stopped sharing leaves the
# training data at the next retrain.
if [ -n "${BITZERO_DATABASE_URL:-}" ]; then
  bitzero feedback export --out data/01_raw/feedback/service.jsonl
fi
dvc remote add --local --force --default bitzero "$DVC_REMOTE_URL"
if [ -n "${DVC_REMOTE_ENDPOINT_URL:-}" ]; then
  dvc remote modify --local bitzero endpointurl "$DVC_REMOTE_ENDPOINT_URL"
fi
if [ -n "${DVC_CACHE_DIR:-}" ]; then
  dvc cache dir --local "$DVC_CACHE_DIR"
fi
if [ -n "${DVC_LOCK_FILE:-}" ] && [ -f "$DVC_LOCK_FILE" ]; then
  cp "$DVC_LOCK_FILE" dvc.lock
fi
dvc repro "$@"
dvc push --with-deps "$@"
if [ -n "${DVC_LOCK_FILE:-}" ]; then
  cp dvc.lock "$DVC_LOCK_FILE.tmp"
  mv "$DVC_LOCK_FILE.tmp" "$DVC_LOCK_FILE"
fi
