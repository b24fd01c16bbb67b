# The two commands of the README, and their helpers. Everything is in scripts/.
.PHONY: demo test image-test reliability bench restart-router call

demo:            ## local Crossbar router + wampd hosting examples/hello.py
	scripts/demo

test:            ## virtualenvs, ruff, mypy and the whole test suite (real router included)
	scripts/test

image-test:      ## build the real container image with buildah and run it against a real router
	scripts/test-image

reliability:     ## the full fault matrix, a 10-minute soak and HTTP load (docs/RELIABILITY.md)
	scripts/reliability

bench:           ## wampd vs autobahn's runners on a real router, ~10 min (docs/BENCHMARKS.md)
	scripts/bench

restart-router:  ## while the demo runs: kill -9 the demo router and start it again
	scripts/demo restart-router

call:            ## while the demo runs: call com.example.hello like any WAMP client
	scripts/demo call
