"""The benchmarks. Each module has ``run(ctx) -> list[Metric]``; ``benchmarks.runner`` lists them."""
