# The README's two commands are `make local` and `make test`; both run setup first.
.PHONY: setup local test bench
SHELL := /bin/bash

setup:
	@scripts/setup.sh

local: setup
	@scripts/local.sh

test: setup
	@scripts/test.sh

bench: setup
	@scripts/bench.sh
