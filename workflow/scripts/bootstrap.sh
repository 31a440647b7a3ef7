#!/usr/bin/env bash
# Create the virtual environment from the pinned requirements (once) and make sure the
# embedded dataset, Fashion-MNIST, is on disk: Debian's package when apt is usable, otherwise
# torchvision's download into ~/.cache/kdrepro/fashion_mnist.
set -euo pipefail
venv=${1:-.venv}
# Two bootstraps at once (`make run` and `make test` started together on a fresh machine) would install into
# the same venv side by side and race for apt's lock: they take turns, and each looks again once it holds the lock.
exec 9>"${TMPDIR:-/tmp}/kdrepro-bootstrap-$(id -u).lock"
flock 9
stamp="$venv/.installed-$(cat requirements.txt pyproject.toml | md5sum | cut -c1-12)"
if [ ! -e "$stamp" ]; then
  echo "[bootstrap] creating $venv with the pinned requirements (a few minutes the first time)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r requirements.txt
  "$venv/bin/pip" install -q --no-deps -e .
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ ! -d "$HOME/.cache/kdrepro/fashion_mnist" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[bootstrap] installing Debian's dataset-fashion-mnist"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "[bootstrap] apt is not usable here: downloading Fashion-MNIST with torchvision"
    "$venv/bin/python" -c "from kdrepro.data.sources import load_dataset; load_dataset('fashion_mnist', download=True)"
  fi
fi
