# appf: `make demo` sets up and runs the main job on generated sample data; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
OUT ?= out/demo
EPISODES ?= 8

.PHONY: setup demo test bench bench-deps clean

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0   # CPU build from this machine's disk; unpinned torch pulls CUDA
	$(PIP) install -q -e ".[depth,train,test]"
	$(PIP) install -q --no-deps dlr-moge==2.0.0 dlr-utils3d==1.3   # MoGe-2 model class only
	# zarr-python 2 beside the venv (not in it): the tests prove DP3/diffusion_policy readers open
	# --zarr-format 2 shards
	$(PIP) install -q --no-deps --upgrade --target $(VENV)/zarr2 zarr==2.18.7 numcodecs==0.15.1 \
		asciitree==0.3.3 fasteners==0.20 deprecated==1.2.18 wrapt==2.5.2
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/appf reannotate --source synthetic --episodes $(EPISODES) --out $(OUT)
	$(VENV)/bin/appf validate $(OUT)
	$(VENV)/bin/appf inspect $(OUT) --png $(OUT)/preview.png

test: setup
	$(PY) -m pytest -q

bench-deps: setup
	apt-get update -qq && apt-get install -y -qq libusb-1.0-0 libgl1 >/dev/null
	$(PIP) install -q -e ".[bench]"

bench: bench-deps
	$(PY) bench/bench_pointcloud.py
	$(PY) bench/bench_stereo.py
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_sources.py
	$(PY) bench/bench_training.py
	$(PY) bench/bench_depth.py

clean:
	rm -rf out .pytest_cache
