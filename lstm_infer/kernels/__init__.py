"""Numba kernels. Every kernel takes weights and sizes as arguments and is cached on disk."""
