# heterocd-gold: the two commands of the README, and the pieces they are made of.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test install browser check-sync nbtest pytest readme review-shot report-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its dev extras

demo: $(STAMP)  ## the main job, end to end, on the embedded synthetic scene
	$(BIN)/gold demo --out reports/demo

test: $(STAMP) browser check-sync nbtest pytest report-check  ## every check CI runs

browser:  ## the headless browser the map tests drive (Debian's chromium): installed when missing and running as root
	@command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium for the map tests (apt-get)"; \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "make test runs the map tests in chromium, which is missing: run  sudo apt-get install -y chromium  then make test" >&2; \
	    exit 1; \
	  fi; }

check-sync: $(STAMP)  ## fail when nbdev_export or nbdev_clean would change the tree
	PATH=$(CURDIR)/$(BIN):$$PATH bash .ci/check_sync

readme: $(STAMP)  ## render README.md from nbs/index.ipynb (edit the notebook, not the README)
	$(BIN)/jupyter-nbconvert --to markdown --stdout nbs/index.ipynb > README.md.tmp && mv README.md.tmp README.md

nbtest: $(STAMP)  ## the tests inside the notebooks
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: $(STAMP)  ## integration tests across process boundaries
	$(BIN)/python -m pytest -q --durations=8 tests

SHOT_SCENE ?= data/demo/unseen/unseen
SHOT_PRED  ?= data/demo/predict
review-shot: $(STAMP)  ## the README's JupyterLab screenshot, from the demo's unseen scene and prediction (after `make demo`)
	$(BIN)/python tests/review_shot.py --scene $(SHOT_SCENE) --pred $(SHOT_PRED) --out reports/figures/review_lab.png

report-check: $(STAMP)  ## fail when a committed report would come out differently with today's code
	$(BIN)/gold report --check

clean:
	rm -rf $(VENV) _proc _docs .pytest_cache
