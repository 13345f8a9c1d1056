# The two commands of the README: `make reproduce` and `make test`.
# Each creates the virtual environment on first use.
PY ?= python3
VENV ?= .venv
# The CPU wheel that the machines of this project keep on disk; override for a CUDA build,
# e.g. `make reproduce TORCH_SPEC="torch>=2.1"`.
TORCH_SPEC ?= torch==2.13.0
SCALE ?= quick
BIN := $(VENV)/bin

.PHONY: venv reproduce outputs test test-notebooks test-pytest check-export docs readme clean-runs

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py settings.ini
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

## Regenerate the paper's tables and figures into figures/ (SCALE=quick by default).
reproduce: venv
	$(BIN)/mmp_repro reproduce --scale $(SCALE)

## The whole test suite: modules in sync with notebooks, notebook tests, pytest.
test: venv check-export test-notebooks test-pytest

# Export the notebooks, then fail if that changed any module: nbs/ is the source of mmp_repro/.
check-export: venv
	@tmp=$$(mktemp -d) && cp -r mmp_repro "$$tmp/" && $(BIN)/nbdev_export && \
	if diff -r -q -x __pycache__ "$$tmp/mmp_repro" mmp_repro; then echo "exported modules match nbs/"; \
	else echo "mmp_repro/ was out of sync with nbs/ (nbdev_export has now rewritten it)"; exit 1; fi

test-notebooks: venv
	$(BIN)/nbdev_test --n_workers 2 --do_print

test-pytest: venv
	$(BIN)/python -m pytest -q tests

## Execute the lesson notebooks and save their outputs in place (tests/test_notebook_outputs.py checks them).
outputs: venv
	$(BIN)/python scripts/notebook_outputs.py write

## Documentation site in _docs/html (open _docs/html/index.html): README, lessons, executed experiments, results,
## API and CLI reference, from the committed files (runs nothing; tests/test_docs_site.py checks it in a browser).
docs: docs-deps
	$(BIN)/python docs/stage.py _docs/src
	$(BIN)/python -m sphinx -b html -c docs -d _docs/doctrees -q -W --keep-going _docs/src _docs/html
	@echo "site: _docs/html/index.html"

# The docs extra of setup.py (Sphinx, myst-nb, furo, sphinx-argparse, a local MathJax, selenium), once.
docs-deps: $(VENV)/.docs-installed

$(VENV)/.docs-installed: $(VENV)/.installed setup.py settings.ini
	$(BIN)/python -m pip install -q -e ".[docs]"
	touch $@

.PHONY: docs-deps

## README.md is the markdown of nbs/index.ipynb (tests/test_readme.py checks it).
readme: venv
	$(BIN)/python -c "import json; nb = json.load(open('nbs/index.ipynb')); \
	open('README.md', 'w').write('\n\n'.join(''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'markdown') + '\n')"

clean-runs:
	rm -rf runs
