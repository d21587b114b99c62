"""The bad-input corpus: hostile or broken extracts, each one mutation of valid simulated extracts."""
