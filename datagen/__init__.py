"""datagen: build verified reasoning-distillation datasets (docs/architecture.md).

A regular package (not a namespace one), so the checkout first on the path is
the one imported, and the import contracts read exactly its modules.
"""

import os

# OpenMP threads that wait by spinning (libgomp's default) starve each other when the
# cores are shared: the local teacher's decode step on 2 busy cores (load 15) took
# 8.6 s with 2 spinning threads and 0.97 s with passive ones. Read once, when torch
# loads its OpenMP runtime, so it is set here, before any torch import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
