# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: demo test test-arm64 bench-arm64 bench bootstrap-demo bootstrap-test

demo: bootstrap-demo
	.venv/bin/edge demo $(DEMO_ARGS)

test: bootstrap-test
	.venv/bin/python -m pytest

# The suite again on arm64, in an emulated Debian 12 root file system (root; slow, not part of `test`).
# ARGS: pytest arguments instead of the whole suite, e.g. ARGS="-q tests/models".
test-arm64:
	@bash .ci/arm64 $(ARGS)

# bench/ingest.py and bench/recommend.py in that emulated system (root): their ratios to the bare
# parts in the same run are the point, not the absolute figures.
bench-arm64:
	@bash .ci/arm64 --bench

bench: bootstrap-test
	taskset -c 0 .venv/bin/python bench/ingest.py
	.venv/bin/python bench/ingest.py --tls
	taskset -c 0 .venv/bin/python bench/recommend.py
	.venv/bin/python bench/decide.py
	.venv/bin/python bench/devices.py
	.venv/bin/python bench/sync.py --events 200000
	.venv/bin/python bench/admission.py
	.venv/bin/python bench/fleet.py
	.venv/bin/python bench/attach.py
	.venv/bin/python bench/triggers.py --pin

bootstrap-demo:
	@bash .ci/bootstrap demo

bootstrap-test:
	@bash .ci/bootstrap test
