"""processpype benchmarks: each module's ``run(size)`` returns rows of ratios against baselines."""
