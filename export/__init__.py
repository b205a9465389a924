"""skoots_export: SKOOTS training checkpoints → TorchScript → Triton model repository."""
