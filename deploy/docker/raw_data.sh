#!/bin/sh
# Copy the raw data shipped in the training image ($BITZERO_RAW_DATA: the seed and open datasets) into
# data/01_raw. On Kubernetes the data volume is mounted over /app/data and hides the image's copy;
# the stages (and DVC, which hashes their inputs) need it there. The image's copy wins, so a new
# image brings its seed; the service's feedback export beside it (data/01_raw/feedback/) stays.
# Without BITZERO_RAW_DATA (a checkout) there is nothing to do.
set -eu
if [ -n "${BITZERO_RAW_DATA:-}" ]; then
  mkdir -p data/01_raw
  cp -R "$BITZERO_RAW_DATA/." data/01_raw/
fi
