"""A picture of SKOOTS in napari for the docs: the demo sample segmented by the widget.

    python -m examples.napari_screenshot docs/images/napari.png

Opens a napari viewer (it needs a display: run it under ``xvfb-run -a`` on a machine without
one), opens File ▸ Open Sample ▸ SKOOTS demo, runs the "SKOOTS segmentation" widget on it and
saves a screenshot of the window, labels over the image.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def render(out: Path, volume: object | None = None, repository: Path | None = None) -> Path:
    """Segment ``volume`` (default: the demo sample) with ``repository`` (default: the demo
    model) through the widget in a napari window, and save the window's screenshot to ``out``."""
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from skoots_client.napari_plugin.widget import SegmentationWidget

    viewer = napari.Viewer(show=True)
    try:
        if volume is None:
            viewer.open_sample("skoots-triton", "demo")
        else:
            viewer.add_image(volume, name="volume", metadata={"skoots_model": str(repository)})
        widget = SegmentationWidget(viewer)
        viewer.window.add_dock_widget(widget, name="SKOOTS segmentation")
        widget.reset_choices()
        widget.image.value = viewer.layers[0]
        widget.device.value = "cpu"
        loop = QEventLoop()
        widget.run()
        poll = QTimer()
        poll.timeout.connect(lambda: None if widget.running else loop.quit())
        poll.start(100)
        loop.exec()
        poll.stop()
        viewer.dims.ndisplay = 2
        viewer.dims.set_current_step(0, viewer.dims.nsteps[0] // 2)
        viewer.layers[-1].opacity = 0.6
        out.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(out), canvas_only=False)
    finally:
        viewer.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG file to write")
    args = parser.parse_args(argv)
    print(render(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
