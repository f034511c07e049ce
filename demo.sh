#!/usr/bin/env bash
# The main job on a fresh machine, end to end:
#   set up a venv -> train (the fast profile: 150 px, every accuracy lever on)
#   -> convert (float32 + dynamic) -> classify a sample image.
#
#   bash demo.sh
#
# The fast profile is the best model this script can train from a cold feature
# cache within its 8-minute budget on a 2-core machine (README "Accuracy
# levers"); the production profile is `python -m train --image-size 299`.
#
# Data and weights: CLOTHING_DATA_DIR and XCEPTION_WEIGHTS if set; else ../shared
# when it exists (this team's machines); else the dataset is cloned from GitHub
# and Keras downloads the ImageNet weights (needs internet).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
RUNS=${RUNS:-runs}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
# Only the product's own lines by default; CLOTHING_VERBOSE=1 bash demo.sh shows
# pip's and setuptools' notes and TensorFlow's C++ log lines too. -qq: pip prints
# errors only (its warnings include setuptools' notes on editable installs).
pip_quiet=(-qq)
[ "${CLOTHING_VERBOSE:-0}" != 1 ] || pip_quiet=()
python -m pip install "${pip_quiet[@]}" --upgrade pip
python -m pip install "${pip_quiet[@]}" -e '.[train,serve]'

if [ -z "${CLOTHING_DATA_DIR:-}" ]; then
  if [ -d ../shared/data/clothing-dataset-small ]; then
    CLOTHING_DATA_DIR=$(cd ../shared/data/clothing-dataset-small && pwd)
  else
    [ -d data/clothing-dataset-small ] ||
      git clone --depth 1 https://github.com/alexeygrigorev/clothing-dataset-small data/clothing-dataset-small
    CLOTHING_DATA_DIR=$(pwd)/data/clothing-dataset-small
  fi
fi
if [ -z "${XCEPTION_WEIGHTS:-}" ] && [ -f ../shared/models/xception_imagenet_notop.weights.h5 ]; then
  XCEPTION_WEIGHTS=$(cd ../shared/models && pwd)/xception_imagenet_notop.weights.h5
fi
export CLOTHING_DATA_DIR XCEPTION_WEIGHTS="${XCEPTION_WEIGHTS:-imagenet}"

python -m train --image-size 150 --output "$RUNS/model" --force
# Ship `dynamic` (a quarter of the size, ~2x faster) when it passes its check.
# Exit code 1 means a variant missed its agreement bar (issue 13: dynamic sits
# near its 98% bar on some models): then ship float32, converted on its own
# into $RUNS/bundles-float32 so that the shipped bundle's own check passes
# ($RUNS/bundles keeps both variants and the failing report, for the record).
rc=0
python -m convert "$RUNS/model" --out "$RUNS/bundles" --variants float32 dynamic --force || rc=$?
shipped=$RUNS/bundles/dynamic
if [ "$rc" -eq 1 ]; then
  echo "warning: dynamic missed its check ($RUNS/bundles/report.md); shipping float32" >&2
  python -m convert "$RUNS/model" --out "$RUNS/bundles-float32" --variants float32 --force
  shipped=$RUNS/bundles-float32/float32
elif [ "$rc" -ne 0 ]; then
  exit "$rc"
fi
echo "shipped bundle: $shipped (docker build --build-arg BUNDLE=$shipped)"
sample=$(find "$CLOTHING_DATA_DIR/test/t-shirt" -name '*.jpg' | sort | head -n 1)
python -m inference predict "$sample" --model "$shipped"
