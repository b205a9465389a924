"""The "SKOOTS segmentation" dock widget: segment the open image in one click.

A thin GUI over [`segment`][skoots_client.segment]: the widget turns its fields into the API's
keywords, runs the call in a worker thread (the Qt event loop only draws and relays progress)
and turns the result into a Labels layer with the image's scale and the instance table as its
features. A user mistake is one napari notification; Cancel stops the run within one batch and
leaves no layer, thread or file behind.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Optional, cast

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, LineEdit, PushButton, SpinBox, create_widget
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from ..catalog import skoots_models
from ..choices import Device, Runtime
from ..errors import ClientError
from ..instances import write_table
from ..keyword_triples import voxel_size_value
from ..options import OPTIONS, Option, Render, as_keyword, in_terms
from ..progress import Cancelled
from .model_list import runs_here
from .view_button import ViewButton

__all__ = ["AUTOMATIC", "UNITS", "MODEL_METADATA", "MODEL_READY_METADATA", "in_fields", "SegmentationWidget"]

FROM_FOLDER, FROM_SERVER = "repository folder", "server URL"
AUTOMATIC = "(automatic)"
UNITS = ("um", "nm", "mm")
PIXELS, UNKNOWN = "pixels", "unknown"  # no voxel size; a scale in no named unit (a layer's scale without units)
# What napari calls a layer's length unit -> the runtime's spelling.
_NAPARI_UNITS = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm"}
MODEL_METADATA = "skoots_model"  # an image layer's metadata key naming the repository to use (the demo sample)
MODEL_READY_METADATA = "skoots_model_ready"  # and a Future done once that repository is written (the demo's export)


def in_fields(labels: dict[str, str], option: Option, value: str | None) -> str:
    """An option as the widget shows it, for messages: its field's label in quotes (“post-processing
    on”), else (an option the widget has no field for) the API's keyword.

    >>> in_fields({"device": "post-processing on"}, OPTIONS["device"], "gpu")
    '“post-processing on” gpu'
    """
    label = labels.get(option.name)
    if label is None:
        return as_keyword(option, value)
    return f"“{label}”" if value is None else f"“{label}” {value}"


class _Relay(QObject):
    """Carries progress from the worker thread to the Qt thread (a queued signal)."""

    progressed = Signal(str, int, int)
    warned = Signal(str)


@dataclass(frozen=True)
class _Outcome:
    """What the worker thread gives back: the segmentation, or the user-facing error that stopped it."""

    result: Any = None
    error: ClientError | None = None


class SegmentationWidget(Container):
    """Segment an image layer with an exported SKOOTS model, in this process, on a Triton
    server or block by block on a Dask cluster."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.image = cast(ComboBox, create_widget(annotation=Image, label="image"))  # napari's layer picker
        self.source = ComboBox(choices=[FROM_FOLDER, FROM_SERVER], value=FROM_FOLDER, label="model from")
        self.repository = FileEdit(mode=FileDialogMode.EXISTING_DIRECTORY, label="repository", value=Path(OPTIONS["repository"].default))
        self.url = LineEdit(label="server URL", value="127.0.0.1:8001")
        self.model = ComboBox(choices=[AUTOMATIC], value=AUTOMATIC, label="model")
        self.list_models = PushButton(text="List models")
        self.runtime = ComboBox(choices=list(Runtime.texts()), value=str(OPTIONS["runtime"].default), label="runtime")
        self.device = ComboBox(choices=list(Device.texts()), value=str(OPTIONS["device"].default), label="post-processing on")
        self.normalize = ComboBox(choices=["auto", "dtype", "minmax", "percentile"], value="auto", label="normalise")
        self.channel = SpinBox(min=-1, max=64, value=-1, label="channel (-1: auto)")
        # typing.Optional: the annotation magicgui reads for a layer picker with an empty choice
        self.mask = cast(ComboBox, create_widget(annotation=Optional[Labels], label="mask (optional)"))  # noqa: UP045
        self.voxel = [FloatSpinBox(min=0.0, max=1e6, step=0.001, value=1.0, label=f"voxel {axis}") for axis in "zyx"]
        for box in self.voxel:
            box.native.setDecimals(6)  # nanometre-scale sizes in micrometres
        self.unit = ComboBox(choices=[PIXELS, UNKNOWN, *UNITS], value=PIXELS, label="unit")
        self.blockwise = CheckBox(text="large volume: blockwise on Dask", value=False)
        self.destination = FileEdit(mode=FileDialogMode.OPTIONAL_FILE, filter="*.ome.zarr", label="labels to (.ome.zarr)")
        self.scheduler = LineEdit(label="scheduler (empty: local)", value="")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.save_table = PushButton(text="Save table…", enabled=False)
        self.neuroglancer = ViewButton()  # a result written to disk, in a local Neuroglancer
        self.table_path = FileEdit(mode=FileDialogMode.OPTIONAL_FILE, filter="*.csv *.parquet", label="table file")
        self.status = Label(value="")
        self.extend([self.image, self.source, self.repository, self.url, self.model, self.list_models, self.runtime,
                     self.device, self.normalize, self.channel, self.mask, *self.voxel, self.unit, self.blockwise,
                     self.destination, self.scheduler, self.run_button, self.cancel_button, self.table_path,
                     self.save_table, self.neuroglancer, self.status])

        self._cancel: threading.Event | None = None
        self._worker: Any = None
        self._bar: Any = None
        self.relay = _Relay()
        self.relay.progressed.connect(self._show_progress)
        self.relay.warned.connect(_notify_warning)
        self._temporary: list[Path] = []
        self.last_result: Any = None  # the Segmentation of the last run, for "Save table…"

        self.image.changed.connect(self._take_layer)
        self.source.changed.connect(self._show_source)
        self.blockwise.changed.connect(self._show_blockwise)
        self.list_models.changed.connect(self._list_models)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.save_table.changed.connect(self._save_table)
        self._show_source()
        self._show_blockwise()
        self._take_layer()

    # --- fields -----------------------------------------------------------------------------

    def _show_source(self, *_: Any) -> None:
        served = self.source.value == FROM_SERVER
        self.url.visible, self.repository.visible, self.runtime.visible = served, not served, not served
        self.model.choices, self.model.value = [AUTOMATIC], AUTOMATIC

    def _show_blockwise(self, *_: Any) -> None:
        self.destination.visible = self.scheduler.visible = self.blockwise.value

    def _take_layer(self, *_: Any) -> None:
        """Fill the voxel size, unit and model from the chosen image layer. A scale without
        units (napari's default unit is "pixel") is kept as a scale in no named unit, never
        dropped: the table is then in scaled units, as the layer shows it."""
        layer = self.image.value
        if layer is None:
            return
        scale = tuple(float(size) for size in tuple(layer.scale)[-3:])
        for box, size in zip(self.voxel, scale):
            box.value = size
        units = getattr(layer, "units", None)
        name = str(units[-1]) if units else "pixel"
        self.unit.value = _NAPARI_UNITS.get(name, PIXELS if all(size == 1.0 for size in scale) else UNKNOWN)
        model = layer.metadata.get(MODEL_METADATA) if hasattr(layer, "metadata") else None
        if model:
            self.source.value, self.repository.value = FROM_FOLDER, Path(model)

    def _list_models(self, *_: Any) -> None:
        try:
            if self.source.value == FROM_SERVER:
                found = skoots_models(url=self.url.value.strip())
            else:
                found = skoots_models(repository=_path(self.repository))
        except ClientError as e:
            show_error(str(e))
            return
        names = [name for name, _ in found]
        self.model.choices = [AUTOMATIC, *names]
        if self.source.value == FROM_FOLDER:  # what each would run on here, as the run reports it
            found = [(name, runs_here(_path(self.repository), name, self.runtime.value)) for name in names]
        show_info(f"SKOOTS models: {', '.join(f'{n} ({k})' for n, k in found)}" if found else "no SKOOTS model there")

    def fields(self) -> dict[str, str]:
        """The label of the field that gives each keyword of `segment`
        (the volume aside), as messages name it."""
        return {"url": self.url.label, "model": self.model.label, "repository": self.repository.label,
                "runtime": self.runtime.label, "device": self.device.label, "normalize": self.normalize.label,
                "channel": self.channel.label, "mask": self.mask.label, "voxel_size": "voxel z, y, x",
                "unit": self.unit.label, "blockwise": self.blockwise.text, "out": self.destination.label,
                "scheduler": self.scheduler.label}

    def keywords(self) -> dict[str, Any]:
        """The keywords of [`segment`][skoots_client.segment] the fields give (the volume aside)."""
        kwargs: dict[str, Any] = {"quiet": True, "device": self.device.value}
        if self.model.value != AUTOMATIC:
            kwargs["model"] = self.model.value
        if self.source.value == FROM_SERVER:
            kwargs["url"] = self.url.value.strip()
        else:
            kwargs["repository"] = _path(self.repository)
            kwargs["runtime"] = self.runtime.value
        if self.normalize.value != "auto":
            kwargs["normalize"] = self.normalize.value
        if self.channel.value >= 0:
            kwargs["channel"] = self.channel.value
        sizes = tuple(box.value for box in self.voxel)
        if self.unit.value == UNKNOWN:
            kwargs["voxel_size"] = replace(voxel_size_value(sizes, "um"), unit=None)  # the scale, in no named unit
        elif self.unit.value != PIXELS:
            kwargs["voxel_size"], kwargs["unit"] = sizes, self.unit.value
        if self.blockwise.value:
            kwargs["blockwise"] = True
            kwargs["out"] = _path(self.destination)
            if self.scheduler.value.strip():
                kwargs["scheduler"] = self.scheduler.value.strip()
        return kwargs

    # --- running ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._worker is not None

    def run(self, *_: Any) -> None:
        """Start a segmentation of the chosen image in a worker thread."""
        layer = self.image.value
        if self.running:
            return
        if layer is None:
            show_error("no image layer to segment: open an image first")
            return
        try:
            kwargs = self.keywords()
            if kwargs.get("blockwise") and not str(self.destination.value).endswith(".ome.zarr"):
                raise ClientError("a large volume is written as OME-Zarr: choose where, a path ending in .ome.zarr")
            volume = self._volume(layer, path_needed=bool(kwargs.get("blockwise")))
            if self.mask.value is not None:
                kwargs["mask"] = self._saved(self.mask.value.data, "mask")
        except ClientError as e:
            self._clean()
            show_error(str(e))
            return
        self._cancel = threading.Event()
        self._bar = napari_progress(total=0, desc="SKOOTS: starting")
        self.run_button.enabled, self.cancel_button.enabled, self.save_table.enabled = False, True, False
        self.neuroglancer.offer(None)
        self.status.value = "running…"
        ready = layer.metadata.get(MODEL_READY_METADATA) if self.source.value == FROM_FOLDER else None
        if ready is not None and not ready.done():
            self.status.value = "waiting for the demo model's export…"
            self._bar.set_description("SKOOTS: waiting for the demo model's export")
        terms = partial(in_fields, self.fields())
        self._worker = create_worker(self._segment, volume, kwargs, self._cancel, ready, terms, _start_thread=False)
        self._worker.returned.connect(lambda outcome: self._show_outcome(layer, outcome))
        self._worker.finished.connect(self._finish)
        self._worker.start()

    def cancel(self, *_: Any) -> None:
        """Stop the run within one batch: no layer, no files."""
        if self._cancel is not None:
            self._cancel.set()
            self.status.value = "cancelling…"

    def _segment(self, volume: Any, kwargs: dict[str, Any], cancel: threading.Event, ready: Any = None,
                 terms: Render = as_keyword) -> _Outcome:
        """Runs in the worker thread: the segmentation, its labels and table, nothing of Qt. A
        user's mistake or a cancel comes back as the outcome's error: napari would show an
        exception leaving a worker with its traceback; a bug does leave it, traceback and all.
        ``ready`` (a Future, the demo sample's export) is waited for first, Cancel heeded."""
        from .. import api

        try:
            while ready is not None and not ready.done():
                if cancel.is_set():
                    raise Cancelled("cancelled while the model was being exported")
                cancel.wait(0.1)
            if ready is not None and ready.exception() is not None:
                return _Outcome(error=ClientError(f"the demo model could not be exported: {ready.exception()}"))
            with in_terms(terms):  # messages name this widget's fields, not flags or keywords
                result = api.segment(volume, progress=self.relay.progressed.emit, cancel=cancel, warn=self.relay.warned.emit,
                                     note=self.relay.warned.emit, **kwargs)
            if not kwargs.get("blockwise"):
                result.labels  # noqa: B018 - materialised here, not in the Qt thread
            result.table  # noqa: B018 - likewise
        except ClientError as e:  # Cancelled included
            return _Outcome(error=e)
        return _Outcome(result=result)

    def _show_progress(self, stage: str, done: int, total: int) -> None:
        if self._bar is None:
            return
        if self._bar.total != total:
            self._bar.total = total
        self._bar.set_description(f"SKOOTS: {stage}")
        self._bar.n = done
        self._bar.refresh()
        self.status.value = f"{stage} {done}/{total}"

    def _show_result(self, layer: Any, result: Any) -> None:
        self.last_result = result
        features = result.table.to_pandas() if hasattr(result.table, "to_pandas") else None
        if features is not None:
            features.insert(0, "index", features["label"].to_numpy())
        name = f"{layer.name} labels"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        data = _lazy_levels(result.written) if self.blockwise.value and result.written is not None else result.labels
        if isinstance(data, list) and len(data) == 1:  # napari takes one level as a plain array only
            data = data[0]
        self.viewer.add_labels(data, name=name, scale=tuple(layer.scale)[-3:], translate=tuple(layer.translate)[-3:],
                               features=features, multiscale=isinstance(data, list))  # lazy levels stay on disk
        self.save_table.enabled = True
        self.neuroglancer.offer(result.written, getattr(layer.source, "path", None))
        self.status.value = f"{result.instances} instances"

    def _show_outcome(self, layer: Any, outcome: _Outcome) -> None:
        if outcome.error is None:
            self._show_result(layer, outcome.result)
        elif isinstance(outcome.error, Cancelled):
            show_info("SKOOTS: cancelled")
            self.status.value = "cancelled"
        else:
            show_error(str(outcome.error))
            self.status.value = "failed"

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._worker, self._cancel = None, None, None
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self._clean()

    def _save_table(self, *_: Any) -> None:
        if self.last_result is None:
            return
        path = _path(self.table_path)
        if path.suffix.lower() not in (".csv", ".parquet") or path.is_dir():
            show_error(f"table file {path}: name a .csv or .parquet file")
            return
        try:
            write_table(path, self.last_result.table)
        except ClientError as e:
            show_error(str(e))
            return
        show_info(f"table written to {path}")

    # --- the layer's data as the API takes it -------------------------------------------------

    def _volume(self, layer: Any, path_needed: bool) -> Any:
        """The layer's full-resolution data, or a file holding it when the run needs a path."""
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        if not path_needed:
            return data
        source = getattr(getattr(layer, "source", None), "path", None)
        if source and Path(source).exists() and not getattr(layer, "multiscale", False):
            return Path(source)
        return self._saved(data, "volume")

    def _saved(self, data: Any, name: str) -> Path:
        """``data`` written to a temporary Zarr array, removed when the run ends."""
        import zarr

        folder = Path(tempfile.mkdtemp(prefix="skoots-napari-"))
        self._temporary.append(folder)
        path = folder / f"{name}.zarr"
        array = zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, chunks=_chunks(data.shape))
        array[...] = np.asarray(data)
        return path

    def _clean(self) -> None:
        for folder in self._temporary:
            shutil.rmtree(folder, ignore_errors=True)
        self._temporary.clear()


def _path(edit: FileEdit) -> Path:
    """The path a field names: one Path for a field that is neither nullable nor multi-file
    (magicgui types a FileEdit's value for all its modes)."""
    return cast(Path, edit.value)


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(min(s, c) for s, c in zip(shape, (64, 256, 256, 8)))


def _lazy_levels(path: Path) -> list[Any]:
    """An OME-Zarr label image's levels as lazy Dask arrays, full resolution first."""
    import dask.array as da
    import zarr

    from ..levels import dataset_paths, multiscales_of

    group = zarr.open_group(str(path), mode="r")
    return [da.from_zarr(group[p]) for p in dataset_paths(multiscales_of(group.attrs.asdict()))]


def _notify_warning(text: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(text)
