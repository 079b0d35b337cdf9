"""The only modules that import a runtime (dlib today)."""
