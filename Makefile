# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: demo test bench bootstrap-demo bootstrap-test

demo: bootstrap-demo
	.venv/bin/edge demo $(DEMO_ARGS)

test: bootstrap-test
	.venv/bin/python -m pytest

bench: bootstrap-test
	taskset -c 0 .venv/bin/python bench/ingest.py
	taskset -c 0 .venv/bin/python bench/recommend.py
	.venv/bin/python bench/decide.py
	.venv/bin/python bench/devices.py
	.venv/bin/python bench/sync.py --events 200000
	.venv/bin/python bench/admission.py

bootstrap-demo:
	@bash .ci/bootstrap demo

bootstrap-test:
	@bash .ci/bootstrap test
