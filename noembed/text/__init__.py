"""Host-side text front ends: list[str] -> numpy arrays. Numpy only; never imports jax."""
