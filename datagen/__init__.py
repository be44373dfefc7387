"""datagen: build verified reasoning-distillation datasets (docs/architecture.md).

A regular package (not a namespace one), so the checkout first on the path is
the one imported, and the import contracts read exactly its modules.
"""
