# MIA Studio: set-up, demo and tests on a fresh Debian machine (run as root, or with sudo available).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PKGS := xvfb xauth libgl1 libegl1 libgl1-mesa-dri libglx-mesa0 libegl-mesa0 libglib2.0-0 \
	libfontconfig1 libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 \
	libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libosmesa6 \
	liblo-tools
export EGL_PLATFORM := surfaceless
export OMP_NUM_THREADS ?= 2

.PHONY: demo test apt venv clean bench model

apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: apt $(BIN)/.installed

demo: venv
	$(BIN)/python -m app.demo

XVFB := $(if $(DISPLAY),,xvfb-run -a -s "-screen 0 1600x1000x24")

# Two pytest workers, one per core (pytest-xdist; a test file stays in one worker, so its module
# fixtures are made once), each with one BLAS/OpenMP thread: 7:36 -> 4:50 here (README, "Tests").
TEST_JOBS ?= 2

test: venv
	$(BIN)/ruff check engine app widgets tests benchmarks
	$(XVFB) env OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile --durations=15 tests

bench: venv
	$(BIN)/python benchmarks/synth_speed.py
	$(BIN)/python benchmarks/augment_speed.py
	$(BIN)/python benchmarks/inference_speed.py
	$(XVFB) $(BIN)/python benchmarks/studio_fps.py

# The shipped default model from nothing (~2 h on 2 CPU cores; rerun after a kill to resume).
model: venv
	$(BIN)/mia model

clean:
	rm -rf $(VENV) build *.egg-info
