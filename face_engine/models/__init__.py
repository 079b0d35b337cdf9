"""Model wrappers: one base class, each model loads its runtime session lazily."""
