"""Side-by-side ratio benchmarks (not tests). Run all: ``make bench`` or ``python -m benchmarks.run``."""
