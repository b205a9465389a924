"""skoots_client: segment volumes with an exported SKOOTS model, through Triton or in-process.

>>> import skoots_client as skoots
>>> result = skoots.segment(volume, model="model_repository")   # doctest: +SKIP
>>> result.labels, result.table, result.voxel_size, result.summary  # doctest: +SKIP

[`segment`][skoots_client.segment] and [`measure`][skoots_client.measure] are what ``skoots-client segment`` and ``measure`` run;
[`Segmentation`][skoots_client.Segmentation] is what ``segment`` returns; `view` is
``skoots-client view`` (a result in a local Neuroglancer, a `View`). Errors a user can cause are
[`ClientError`][skoots_client.ClientError] (under `SkootsError`, the root shared with ``skoots_export``);
[`Cancelled`][skoots_client.Cancelled] when a run is cancelled, [`BlockFailures`][skoots_client.BlockFailures] when blocks of a
blockwise run failed (the rest kept for ``resume=True``). The closed choices of ``device=``, ``runtime=``,
``precision=`` and ``ngff_version=`` are the enums `Device`, [`Runtime`][skoots_client.Runtime],
[`Precision`][skoots_client.Precision] and [`NgffVersion`][skoots_client.NgffVersion] (their text is accepted as well).

A pipeline that builds runs in code uses the specs [`InputSpec`][skoots_client.InputSpec],
[`OutputSpec`][skoots_client.OutputSpec], [`ModelSpec`][skoots_client.ModelSpec],
[`ResumeSpec`][skoots_client.ResumeSpec] and [`ClusterSpec`][skoots_client.ClusterSpec]:
each field is the keyword of ``segment`` of the same name, as ``skoots_client.options.OPTIONS``
describes every option once.
"""

from skoots_export.contract.errors import SkootsError

from .api import measure, segment
from .choices import Device, NgffVersion, Precision, Runtime
from .errors import BlockFailures, ClientError
from .plan import ClusterSpec, InputSpec, ModelSpec, OutputSpec, ResumeSpec
from .progress import Cancelled
from .result import Segmentation
from .view import View, view
from .voxel_size import VoxelSize

__all__ = ["segment", "measure", "view", "View", "Segmentation", "VoxelSize", "Device", "Runtime", "Precision", "NgffVersion",
           "SkootsError", "ClientError", "BlockFailures", "Cancelled", "InputSpec", "OutputSpec", "ModelSpec", "ResumeSpec", "ClusterSpec"]
