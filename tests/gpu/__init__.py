"""The GPU code paths: with fakes on any machine, for real where CuPy sees a GPU (see helpers)."""
