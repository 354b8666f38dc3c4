#!/usr/bin/env bash
# Everything the test suite uses, in the active virtual environment: the project with its dev
# extras, and the optional pieces whose tests would otherwise be skipped (SAM 2, OpenVINO and the
# real readers of our export formats). README's test command and CI both run this script.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --upgrade pip
# cpu: OpenVINO (~60 MB wheel, no torch); readers: the light dependencies of the readers below;
# ray: Ray Data for the --ray tests (it brings pyarrow, protobuf and msgpack, no torch).
pip install -q -e ".[dev,readers,cpu,ray]"
# sam2 1.1.0 is a source package whose isolated build would fetch another torch: install its
# light dependencies, then build it against our torch, without its optional CUDA extension.
pip install -q setuptools "hydra-core>=1.3.2" "iopath>=0.1.10" "tqdm>=4.66.1"
SAM2_BUILD_CUDA=0 pip install -q --no-deps --no-build-isolation "sam2==1.1.0"
python -c "import sam2.build_sam, sam2.automatic_mask_generator"
# The real readers of our export formats; --no-deps keeps the project's torch, numpy and OpenCV.
pip install -q --no-deps ultralytics==8.4.190 label-studio-sdk==2.1.2 datumaro==1.13.12
# The app's browser tests (tests/app): Playwright (in the dev extra) drives the system Chromium,
# since Playwright's own browser download cannot be reached. Installed with apt-get when missing.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "warning: no chromium and no root to apt-get install it; the browser tests skip" >&2
    fi
fi
