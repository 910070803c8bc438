# The two commands of README.rst: `make setup` once, `make test` for every test.
.PHONY: setup test lint bench bench-scale screenshots
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
lint:
	.venv/bin/pre-commit run --all-files
bench:
	bash bench/run.sh
bench-scale:
	bash bench/scale.sh
screenshots:
	.venv/bin/python scripts/screenshots.py
