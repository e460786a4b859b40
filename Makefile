# Segmentation Explainer: every target brings a fresh Debian bookworm machine up first.
#   make demo     set up, then run the sample job headless (outputs in demo_output/)
#   make test     set up, then run the test suite in a real headless QGIS
#   make qgis     set up, then start QGIS desktop with the plugin loaded from this checkout
#   make package  build dist/seg_explainer-<version>.zip for "Install from ZIP"
#   make sample-model  regenerate and retrain the sample ONNX model (own torch venv)
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python

.PHONY: help setup test demo qgis package sample-model bench screenshot clean

help:
	@sed -n 's/^#   //p' Makefile

setup:
	@bash scripts/setup.sh

test: setup
	@bash scripts/run_tests.sh $(PYTEST_ARGS)

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
