#!/usr/bin/env bash
# Install the Debian packages the integration tests and benchmarks use, when missing:
# dcmtk (storescu/storescp), dicom3tools (dciodvfy), orthanc and orthanc-dicomweb (a real
# PACS, DIMSE and DICOMweb), postgresql,
# redis-server (the Redis queue), chromium (the dashboard's browser tests), nodejs and
# npm (fetch the OHIF viewer from the npm registry).
# Needs root to install; without it, says what is missing and leaves the tests to skip
# (under CI=true a missing tool fails the tests instead).
set -euo pipefail

missing=()
command -v /usr/bin/storescu >/dev/null 2>&1 || missing+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
command -v Orthanc >/dev/null 2>&1 || missing+=(orthanc)
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v /usr/bin/chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: missing ${missing[*]}; run as root (or sudo apt-get install ${missing[*]}) to run every test" >&2
    exit 0
fi
echo "install-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
