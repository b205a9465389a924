"""skoots_export: SKOOTS training checkpoints → TorchScript → Triton model repository."""

__all__: list[str] = []
