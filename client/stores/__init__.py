"""Volumes where EM labs keep them: N5, Neuroglancer precomputed and Zarr (v2, v3 sharded),
local or behind HTTP, S3 and GCS, read and written through TensorStore.

``location`` parses ``[FORMAT://]LOCATION`` text; ``reader`` opens a volume for reading by
window and reads its voxel size; ``windows`` reads the windows (a missing chunk: an error, or
zeros counted with ``--fill-missing``); ``writer`` writes labels as precomputed segmentation or N5,
staged and then published; ``export`` writes a blockwise run's labels in place, chunk by chunk
on the workers, the metadata last.
The rest of the client calls only what is named here.
"""

from .export import InPlace, in_place
from .location import Location, StoreUrl, parse
from .metadata import read_store_offset, read_store_voxel_size
from .reader import level, open_volume, store_of, zarr_windows
from .windows import filled_text
from .writer import check_store_destination, output_format, write_store_labels

__all__ = ["InPlace", "Location", "StoreUrl", "check_store_destination", "in_place", "filled_text", "level", "open_volume",
           "output_format", "parse", "read_store_offset", "read_store_voxel_size", "store_of", "write_store_labels", "zarr_windows"]
