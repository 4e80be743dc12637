# The two set-up commands of the README: `make demo` and `make test`.
# Both create the virtual environment on first use.

VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch by default; GPU users: `make TORCH_CONSTRAINT= ...` after
# installing their CUDA torch into $(VENV) (see README).
TORCH_CONSTRAINT ?= constraints/torch-cpu.txt
DEMO_DIR ?= $(CURDIR)/.demo

export SNAKE_HOME ?= $(CURDIR)/.snake_home
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export SNAKE_DATA_DIR ?= $(DEMO_DIR)/release
export SNAKE_BACKBONE ?= $(DEMO_DIR)/backbone
export SNAKE_DEVICE ?= auto
export SNAKE_BATCH_SIZE ?= 0

.PHONY: demo test ui venv dagster-home clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints/base.txt $(TORCH_CONSTRAINT)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints/base.txt $(if $(TORCH_CONSTRAINT),-c $(TORCH_CONSTRAINT)) -e '.[dev]'
	touch $@

dagster-home:
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: venv dagster-home
	$(VENV)/bin/snake-assets demo-data $(DEMO_DIR) > /dev/null
	$(VENV)/bin/snake-assets run --data-dir $(SNAKE_DATA_DIR) --home $(SNAKE_HOME) \
		--backbone $(SNAKE_BACKBONE) --device $(SNAKE_DEVICE) --batch-size $(SNAKE_BATCH_SIZE)

test: venv
	$(PY) -m pytest -m "not gpu" -q

ui: venv dagster-home
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:
	rm -rf $(SNAKE_HOME) $(DAGSTER_HOME) $(DEMO_DIR)
