# TinyEngine: `make demo` and `make test` set up everything they need on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
MODELS ?= ../shared/models
DEMO_MODEL ?= $(MODELS)/mlperf_tiny/vww_96_int8.tflite
DEMO_BOARD ?= stm32f746
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm

.PHONY: all setup system-deps python-deps train-deps nas-deps demo train-demo nas-demo test bench bench-train bench-nas clean

all: test

setup: system-deps python-deps

# Debian packages: installed only when a tool is missing.
system-deps:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null \
	   && [ -f /usr/lib/arm-none-eabi/newlib/thumb/v7e-m+dp/hard/libc_nano.a ]; then \
	  echo "toolchain: arm-none-eabi-gcc and qemu-system-arm present"; \
	else \
	  echo "toolchain: installing $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

# Python packages in a virtual environment, reinstalled when pyproject.toml changes.
python-deps: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[test,profile]'
	@touch $@

# tinytrain's optional extra (torch==2.13.0, scikit-learn, pillow, matplotlib, tqdm).
train-deps: $(VENV)/.installed-train

$(VENV)/.installed-train: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[train]'
	@touch $@


# tinynas' extra (torch==2.13.0, tqdm, scikit-learn, pillow), installed when missing
nas-deps: $(VENV)/.installed-nas

$(VENV)/.installed-nas: $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[nas]'
	@touch $@

# TinyNAS end to end on digits (32x32): one supernet, two budgets on two boards, each winner run under QEMU
nas-demo: setup nas-deps
	$(VENV)/bin/python examples/nas_demo.py -o build/nas-demo

demo: setup
	@mkdir -p build/demo
	$(VENV)/bin/python examples/image_to_npy.py $(DEMO_MODEL) build/demo-input.npy
	$(VENV)/bin/tinyengine run $(DEMO_MODEL) --board $(DEMO_BOARD) -o build/demo --input build/demo-input.npy

# mcunet-vww1 learns digits on the emulated STM32F746 (bench/train.py: head only, sparse update
# with QAS on and off, the same scheme in float32 on the host, peak SRAM, Flash, instructions).
train-demo: setup train-deps
	$(VENV)/bin/python bench/train.py --models $(MODELS) --work build/train-demo \
	  -o build/train-demo/TRAINING.md

test: setup
	$(VENV)/bin/python -m pytest -q tests

bench: setup
	$(VENV)/bin/python bench/run.py --models $(MODELS)

bench-train: setup train-deps
	$(VENV)/bin/python bench/train.py --models $(MODELS) --work build/train-bench

# the TinyNAS section of BENCHMARKS.md: the searched network vs a hand-scaled MobileNetV2, int8 on the board
bench-nas: setup nas-deps
	$(VENV)/bin/python bench/nas.py

clean:
	rm -rf build .pytest_cache
