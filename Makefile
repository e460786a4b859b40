# Segmentation Explainer: every target brings a fresh Debian machine (bookworm: QGIS 3.40 LTR from
# bookworm-backports; trixie: its own 3.40) up first.
#   make demo     set up, then run the sample job headless (outputs in demo_output/)
#   make test     set up, then run the test suite in a real headless QGIS
#   make test-matrix  the suite on QGIS 3.22, 3.40 and 3.44, each in a cached mmdebstrap root (as root)
#   make qgis     set up, then start QGIS desktop with the plugin loaded from this checkout
#   make package  build dist/seg_explainer-<version>.zip for "Install from ZIP"
#   make sample-model  regenerate and retrain the sample ONNX model (own torch venv)
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python

.PHONY: help setup test test-matrix demo qgis package sample-model bench screenshot clean

help:
	@sed -n 's/^#   //p' Makefile

setup:
	@bash scripts/setup.sh

test: setup
	@bash scripts/run_tests.sh $(PYTEST_ARGS)

test-matrix:
	@bash scripts/test_matrix.sh

demo: setup
	@$(PY) scripts/demo.py --out demo_output

qgis: setup
	@bash scripts/run_qgis.sh

package: setup
	@$(PY) scripts/package.py

sample-model: setup
	@bash scripts/make_sample_model.sh

clean:
	rm -rf .cache dist demo_output .pytest_cache

screenshot: setup
	@bash scripts/screenshot.sh

bench: setup
	@bash scripts/bench.sh
