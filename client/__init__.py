"""skoots_client: segment volumes with an exported SKOOTS model, through Triton or in-process."""
