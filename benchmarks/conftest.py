# The benchmarks start pools once per module; the project's per-test leak check
# (tests/conftest.py) does not apply here, each module shuts its pools down itself.
