"""Property-based checks of every op: forward against NumPy, gradient against finite differences."""
