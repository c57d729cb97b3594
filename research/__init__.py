"""Our own research code, not installed with the package: baselines and drivers that
bench/ runs to measure the model against (docs/research.md says what they found)."""
