# Set-up, demo and tests for monai_wsss. Everything lives in a virtual environment ($(VENV)).
PYTHON ?= python3
VENV ?= .venv
# The torch build to install first. On this kind of machine torch==2.13.0 is a CPU build; elsewhere choose e.g.
#   make demo TORCH_SPEC=torch==2.13.0 TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu     (CPU only)
#   make demo TORCH_SPEC=torch==2.13.0 TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128   (CUDA 12.8)
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
PY := $(VENV)/bin/python
BUNDLE := bundles/dtc_semisupervised_seg
DEBIAN_DATA := mricron-data insighttoolkit5-examples
BUNDLE_ARGS = --meta_file configs/metadata.json --bundle_root $(CURDIR)/$(BUNDLE)

.PHONY: setup data-extras demo test lint clean monailabel test-monailabel

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# Two of the four default subjects come from Debian packages: install them when we can (root or sudo).
data-extras:
	@if [ -f /usr/share/mricron/templates/ch2.nii.gz ] && \
	    [ -f /usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz ]; then \
	    echo "Debian data packages present: $(DEBIAN_DATA)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq --no-install-recommends $(DEBIAN_DATA) || \
	    (apt-get update -qq && apt-get install -y -qq --no-install-recommends $(DEBIAN_DATA)); \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	    sudo apt-get install -y -qq --no-install-recommends $(DEBIAN_DATA) || \
	    (sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends $(DEBIAN_DATA)); \
	else \
	    echo "NOTE: could not install $(DEBIAN_DATA) (Debian/Ubuntu, needs root): the default data needs them;"; \
	    echo "      bundles still run on your own data with --dataset_dir."; \
	fi

setup: $(VENV)/.installed data-extras

# Train DTC on the default data, then evaluate it beside the Otsu baseline (about 3 minutes on 2 CPU cores).
demo: setup
	cd $(BUNDLE) && ../../$(PY) -m monai.bundle run --config_file configs/train.json $(BUNDLE_ARGS)
	cd $(BUNDLE) && ../../$(PY) -m monai.bundle run \
	    --config_file "['configs/inference.json','configs/evaluate.json']" $(BUNDLE_ARGS)

test: setup
	$(PY) -m ruff check .
	OMP_NUM_THREADS=2 $(PY) -m pytest -q --durations=20 tests

# Optional: a MONAI Label server for integrations/monailabel in its own environment ($(MONAILABEL_VENV)).
# monailabel pins numpy < 2 (pydicom-seg, numpymaxflow) and would replace a CPU torch with a CUDA build, so torch is
# installed FIRST and kept by a constraints file; the library itself never imports monailabel.
MONAILABEL_VENV ?= .venv-monailabel
MONAILABEL_SPEC ?= monailabel==0.8.5
# pydicom-seg 0.4.1 (monailabel's DICOM-SEG writer) imports pydicom._storage_sopclass_uids, gone in pydicom 3: keep
# pydicom 2 and the DICOM clients that still accept it (measured: pydicom 3.0.2 makes the server fail at start-up)
MONAILABEL_PINS ?= "pydicom<3" "pynetdicom<3" "dicomweb-client<0.60"
$(MONAILABEL_VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(MONAILABEL_VENV)
	$(MONAILABEL_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MONAILABEL_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	printf '%s\n' "$(TORCH_SPEC)" $(MONAILABEL_PINS) > $(MONAILABEL_VENV)/constraints.txt
	$(MONAILABEL_VENV)/bin/python -m pip install --quiet -c $(MONAILABEL_VENV)/constraints.txt \
	    "$(MONAILABEL_SPEC)" -e .
	touch $@

monailabel: $(MONAILABEL_VENV)/.installed

# The MONAI Label tests against the real server (make test skips the server test when $(MONAILABEL_VENV) is absent).
test-monailabel: setup monailabel
	OMP_NUM_THREADS=2 MONAILABEL_PYTHON=$(abspath $(MONAILABEL_VENV))/bin/python $(PY) -m pytest -q \
	    tests/integrations/test_monailabel_contract.py tests/integrations/test_monailabel_server.py

clean:
	rm -rf $(VENV) $(MONAILABEL_VENV) $(BUNDLE)/models $(BUNDLE)/eval $(BUNDLE)/outputs
