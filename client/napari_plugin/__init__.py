"""SKOOTS inside napari: the "SKOOTS segmentation" widget (npe2 manifest ``napari.yaml``).

Needs the napari extra (``pip install "skoots-triton[napari]"``); nothing else in
``skoots_client`` imports this package, so the runtime never needs Qt.
"""

__all__: list[str] = []
