"""Property-based checks of every op: forward against NumPy, gradients against finite differences."""
