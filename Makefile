# The course's one entry point. `make demo` and `make test` are all a newcomer needs;
# each creates .venv on first use and installs into it (a second run is fast).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# nbgrader runs `alembic` from PATH when it creates the gradebook
RUN    := PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python

.PHONY: help demo test test-fast lint notebooks release samples autograde report site site-student \
        references calibrate mutation bench bench-grading bench-sandbox class exchange grade-on-submit formgrader lms deadlines similarity sysdeps clean

help:
	@echo "make demo        release the labs, autograde the sample submissions, feedback, grades, solutions site"
	@echo "make test        ruff, then the whole test suite (installs what it needs; what CI runs)"
	@echo "make test-fast   the fast tests only, about half a minute (skips tests marked slow, browser, system)"
	@echo "make notebooks   rebuild source/<lab>/<lab>.ipynb from labs/<lab>.py"
	@echo "make release     regenerate release/ from source/"
	@echo "make references  regenerate Lab 01 reference outputs (DEVICE=cuda on a GPU machine)"
	@echo "make mutation    the full mutation matrix (every correct variant and mutant, real nbgrader)"
	@echo "make bench       Lab 01 decode benchmark: cached vs uncached vs Hugging Face (prints a table)"
	@echo "make class       a synthetic class of 200: generate, grade in parallel, HTML report (CLASS_LAB, CLASS_N, WORKERS)"
	@echo "make bench-grading  every lab's synthetic class: cold vs warm serial, parallel, every grade checked (BENCH_LABS, CLASS_N)"
	@echo "make bench-sandbox  what the grading sandbox costs per submission"
	@echo "make exchange    nbgrader exchange round trip (release, fetch, submit, collect, autograde)"
	@echo "make formgrader  JupyterLab in the course folder, the formgrader's math served offline (Nbgrader > Formgrader)"
	@echo "make grade-on-submit  grade each new exchange submission, release its feedback; Ctrl-C stops (GOS_FLAGS=--once)"
	@echo "make lms MAP=ids.csv  the grades as a Canvas gradebook import (canvas_grades.csv; README \"Grades into the LMS\")"
	@echo "make deadlines   deadlines.toml (due dates, extensions, late policy) into the gradebook (DEADLINES_FLAGS=--allow-past)"
	@echo "make similarity  pairs of submissions with similar answer code, for a person to read (SIM_FLAGS=\"--lab L --threshold T\")"
	@echo "make lint        ruff"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# System packages (Chromium for the browser tests, bubblewrap) and the local MathJax copy
# for the offline site. Installs only what is missing.
sysdeps:
	bash tools/install_system_deps.sh

demo: $(STAMP) sysdeps
	$(RUN) -m tools.pipeline demo

test: $(STAMP) sysdeps
	$(BIN)/ruff check .
	$(RUN) -m pytest

# Leaves out the tests marked slow, browser or system (markers in pyproject.toml): no
# autograding, whole notebooks, browsers, sandbox or system packages
test-fast: $(STAMP)
	$(RUN) -m pytest -m "not slow and not browser and not system"

lint: $(STAMP)
	$(BIN)/ruff check .

notebooks: $(STAMP)
	$(RUN) -m tools.nbbuild

release: $(STAMP)
	$(RUN) -m tools.pipeline release

samples: $(STAMP)
	$(RUN) -m tools.pipeline samples

# GRADE_WORKERS > 1 needs a PostgreSQL gradebook (c.CourseDirectory.db_url in nbgrader_config.py)
GRADE_WORKERS ?= 1
autograde: $(STAMP) sysdeps
	$(RUN) -m tools.pipeline autograde --workers $(GRADE_WORKERS)

report: $(STAMP)
	$(RUN) -m tools.pipeline report

site: $(STAMP) sysdeps
	$(RUN) -m tools.site

site-student: $(STAMP) sysdeps
	$(RUN) -m tools.site --student

DEVICE ?= cpu
references: $(STAMP)
	$(RUN) -m tools.references --device $(DEVICE)

mutation: $(STAMP)
	$(RUN) -m tools.mutation --all

bench: $(STAMP)
	$(RUN) bench/bench_lab01.py

calibrate: $(STAMP)
	$(RUN) -m tools.calibrate_lab01

CLASS_LAB ?= lab00_cache_sizing
CLASS_N   ?= 200
BENCH_LABS ?= all
WORKERS   ?= 2
class: $(STAMP) sysdeps
	$(RUN) -m tools.classroom all --lab $(CLASS_LAB) --n $(CLASS_N) --workers $(WORKERS)

bench-grading: $(STAMP) sysdeps
	$(RUN) bench/bench_grading.py --lab $(BENCH_LABS) --n $(CLASS_N) --workers $(WORKERS)

bench-sandbox: $(STAMP) sysdeps
	$(RUN) bench/bench_sandbox.py

exchange: $(STAMP)
	$(RUN) -m tools.exchange

# The formgrader with the course's local MathJax (README "Grading written answers")
formgrader: $(STAMP) sysdeps
	$(RUN) -m tools.formgrader

# Grade on submit (README "Grade on submit (optional)"): watches the exchange's inbound folder;
# GOS_FLAGS e.g. --once, --interval 30, --lab lab00_cache_sizing
GOS_FLAGS ?=
grade-on-submit: $(STAMP) sysdeps
	$(RUN) -m tools.grade_on_submit $(GOS_FLAGS)

# Grades into the LMS (README "Grades into the LMS"): MAP = the id mapping file; LMS_OUT the file
# written; LMS_FLAGS e.g. --allow-provisional, --missing-as-zero
MAP       ?= ids.csv
LMS_OUT   ?= canvas_grades.csv
LMS_FLAGS ?=
lms: $(STAMP)
	$(RUN) -m tools.lms canvas --map $(MAP) --out $(LMS_OUT) $(LMS_FLAGS)

# Deadlines (README "Deadlines, extensions and late penalties"): deadlines.toml checked, then its
# due dates and extensions set in the gradebook; DEADLINES_FLAGS=--allow-past for an old term
DEADLINES_FLAGS ?=
deadlines: $(STAMP)
	$(RUN) -m tools.late set $(DEADLINES_FLAGS)

# Similarity check across submissions (README "Similarity check"): prints the pairs to read
SIM_FLAGS ?=
similarity: $(STAMP)
	$(RUN) -m tools.similarity $(SIM_FLAGS)

clean:
	-$(RUN) -m tools.classroom clean
	rm -rf autograded/*/ feedback/ build/ logs/ gradebook.db grades.csv nbgrader_export.csv report.html integrity_holds.json integrity_verdicts.json autograde_runs.json .grade_on_submit.json
