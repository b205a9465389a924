"""``segment --blockwise``: blocks, stages on Dask, label equivalences, the work store, the cluster."""

__all__: list[str] = []
