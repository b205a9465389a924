"""What a user reads names what they touched, in the axes they see: the same mistake names the
keyword through the API (``overwrite=True``) and the flag through the command line
(``--overwrite``); the API takes triples as ``(z, y, x)`` or named text and refuses the command
line's positional seed-order text, which the command line keeps and converts."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import skoots_client as skoots
from skoots_client import api
from skoots_client.errors import InputError, OutputError
from skoots_client.options import OPTIONS, as_flag, as_keyword, in_terms, render

CLIENT = str(Path(sys.executable).parent / "skoots-client")


def blobs(shape_zyx=(20, 60, 52), seed=0) -> np.ndarray:
    from scipy import ndimage

    field = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape_zyx), sigma=(1, 3, 3))
    return ((field - field.min()) / (field.max() - field.min()) * 65535).astype(np.uint16)


def run_client(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([CLIENT, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture
def volume_tif(tmp_path: Path) -> Path:
    path = tmp_path / "blobs.tif"
    tifffile.imwrite(path, blobs())
    return path


def test_an_existing_output_names_overwrite_true_in_the_api_and_overwrite_flag_in_the_cli(e2e_repository: Path, volume_tif: Path,
                                                                                          tmp_path: Path) -> None:
    out = tmp_path / "labels.tif"
    out.write_bytes(b"someone's file")
    with pytest.raises(OutputError) as caught:
        skoots.segment(volume_tif, out=out, model=str(e2e_repository), quiet=True)
    assert str(caught.value) == f"out={str(out)!r} exists; pass overwrite=True to replace it"
    done = run_client("segment", volume_tif, "--out", out, "-r", e2e_repository, "-q")
    assert done.returncode == 2 and done.stderr == f"error: --out {out} exists; pass --overwrite to replace it\n"
    assert out.read_bytes() == b"someone's file"


def test_options_that_do_not_go_together_are_named_as_given(tmp_path: Path, volume_tif: Path, e2e_repository: Path) -> None:
    out = tmp_path / "labels.ome.zarr"
    with pytest.raises(InputError) as caught:
        skoots.segment(volume_tif, out=out, blockwise=True, device="gpu", model=str(e2e_repository), quiet=True)
    assert str(caught.value) == "blockwise=True post-processes on the workers' CPUs; drop device='gpu'"
    done = run_client("segment", volume_tif, "--out", out, "--blockwise", "--device", "gpu", "-r", e2e_repository)
    assert done.returncode == 2 and done.stderr == "error: --blockwise post-processes on the workers' CPUs; drop --device gpu\n"
    assert not out.exists()


def test_warnings_name_keywords_through_the_api(e2e_repository: Path) -> None:
    said: list[str] = []
    skoots.segment(np.zeros((12, 40, 36), np.uint16), model=str(e2e_repository), device="cpu", quiet=True, warn=said.append)
    nothing = [line for line in said if "nothing to segment" in line]
    assert nothing and nothing[0].endswith("check the file, channel= and axes=") and "--" not in nothing[0]


def test_the_outermost_callers_terms_win_and_other_text_is_untouched() -> None:
    with pytest.raises(InputError, match=r"^--min-size -1: give") as caught:
        with in_terms(as_flag), in_terms(as_keyword):
            raise InputError("--min-size -1: give a voxel count of at least 0")
    assert caught.value.args == ("--min-size -1: give a voxel count of at least 0",)
    with pytest.raises(InputError, match=r"^min_size=-1: give a voxel count; see --help-me and x--y$"):
        with in_terms(as_keyword):
            raise InputError("--min-size -1: give a voxel count; see --help-me and x--y")
    assert render("--retry-for and --timeout must be positive", as_keyword) == "retry_for= and timeout= must be positive"
    assert render("drop --ssl --root-cert ca.pem.", as_keyword) == "drop ssl=True root_cert='ca.pem'."
    assert all(render(text, as_flag) == text for text in ("drop --ssl --root-cert ca.pem.", "--out x.tif exists; pass --overwrite",
                                                          "--roi 0:4,:,: and --window and --batch."))
    assert {o.flag for o in OPTIONS.values()} >= {"--overwrite", "--crop", "--voxel-size"}


@pytest.mark.parametrize(("keyword", "text", "message"), [
    ("crop", "300,280,20", "crop='300,280,20' is positional text, the command line's X,Y,Z (seed order: rows, columns, slices); "
                           "give (z, y, x), e.g. crop=(20, 300, 280), or named text, e.g. crop='z=20,y=300,x=280'"),
    ("overlap", "4,6,2", "overlap='4,6,2' is positional text, the command line's X,Y,Z (seed order: rows, columns, slices); "
                         "give (z, y, x), e.g. overlap=(2, 4, 6), or named text, e.g. overlap='z=2,y=4,x=6'"),
    ("block", "64,64", "block='64,64' is positional text, the command line's X,Y,Z (seed order: rows, columns, slices); "
                       "give (z, y, x), e.g. block=(40, 512, 512), or named text, e.g. block='z=40,y=512,x=512'"),
    ("voxel_size", "0.5,0.25,2um", "voxel_size='0.5,0.25,2um' is positional text, the command line's X,Y,Z (seed order: rows, "
                                   "columns, slices); give (z, y, x), e.g. voxel_size=(2, 0.5, 0.25), or named text, e.g. "
                                   "voxel_size='z=2,y=0.5,x=0.25um'"),
])
def test_the_api_refuses_positional_triples_in_one_line_with_both_forms(keyword: str, text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        skoots.segment(np.zeros((12, 40, 36), np.uint16), quiet=True, **{keyword: text})
    assert str(caught.value) == message and "\n" not in message


def test_the_api_reads_tuples_and_named_text_as_napari_names_the_axes() -> None:
    assert api.triple("--crop", (20, 300, 280)) == api.triple("--crop", "z=20,y=300,x=280") == (300, 280, 20)
    assert api.voxel_size_value("z=2,y=0.5,x=0.25nm", None).zyx == api.voxel_size_value((2, 0.5, 0.25), "nm").zyx == (2, 0.5, 0.25)
    with pytest.raises(InputError, match=r"^crop='z=20,y=300': name each of z, y, x once with a number, e.g. crop='z=20,y=300,x=300', "
                                         r"or give a tuple \(z, y, x\), e.g. crop=\(20, 300, 300\)$"):
        api.triple("--crop", "z=20,y=300")
    with pytest.raises(InputError, match=r"^voxel_size=\(-1\.0, 1\.0, 1\.0\) \(z, y, x\): sizes must be positive"):
        api.voxel_size_value((-1, 1, 1), None)


def test_the_command_lines_positional_crop_is_the_apis_zyx_tuple(e2e_repository: Path, volume_tif: Path, tmp_path: Path) -> None:
    """``--crop 32,24,8`` (rows, columns, slices) and ``crop=(8, 32, 24)`` segment alike, bitwise."""
    done = run_client("segment", volume_tif, "-r", e2e_repository, "--out", tmp_path / "cli.tif", "--device", "cpu", "-q",
                      "--crop", "32,24,8", "--overlap", "6,4,2")
    assert done.returncode == 0, done.stderr
    result = skoots.segment(volume_tif, repository=e2e_repository, device="cpu", quiet=True, crop=(8, 32, 24), overlap=(2, 6, 4))
    expected = tifffile.imread(tmp_path / "cli.tif")
    assert expected.max() > 1 and np.array_equal(result.labels, expected)
    swapped = skoots.segment(volume_tif, repository=e2e_repository, device="cpu", quiet=True, crop=(8, 24, 32), overlap=(2, 4, 6))
    assert swapped.summary.splitlines()[3] != result.summary.splitlines()[3]  # "36 crops": the axes matter here


def test_the_command_lines_positional_voxel_size_is_the_apis_zyx_tuple(tmp_path: Path) -> None:
    labels = np.zeros((6, 10, 12), np.uint32)
    labels[1:4, 2:9, 3:5] = 1
    path = tmp_path / "labels.tif"
    tifffile.imwrite(path, labels)
    done = run_client("measure", path, "--out", tmp_path / "t.csv", "--voxel-size", "0.5,0.25,2um", "--no-skeleton")
    assert done.returncode == 0, done.stderr
    table = skoots.measure(labels, voxel_size=(2.0, 0.5, 0.25), skeleton=False)
    with open(tmp_path / "t.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["volume_um3"]) == float(table["volume_um3"][0]) == 3 * 7 * 2 * (2.0 * 0.5 * 0.25)
    assert table.voxel_size.zyx == (2.0, 0.5, 0.25)


def test_the_command_line_still_explains_its_positional_text(volume_tif: Path, e2e_repository: Path) -> None:
    done = run_client("segment", volume_tif, "-r", e2e_repository, "--crop", "24,24")
    assert done.returncode == 2 and done.stderr == ("error: --crop '24,24' needs three integers X,Y,Z, e.g. --crop 300,300,20, "
                                                    "or named as napari shows the axes, e.g. --crop y=300,x=300,z=20\n")


def test_the_public_specs_print_their_triples_with_letters() -> None:
    """The specs keep the runtime's (X, Y, Z) = rows, columns, slices; their reprs name the axes."""
    model = skoots.ModelSpec(crop=api.triple("--crop", (20, 300, 280)), overlap=api.triple("--overlap", "z=2,y=10,x=12"))
    assert "crop=(z=20, y=300, x=280), overlap=(z=2, y=10, x=12)" in repr(model)
    assert "block=(z=40, y=512, x=256)" in repr(skoots.ClusterSpec(block=api.triple("--block", (40, 512, 256))))


def test_named_voxel_size_text_is_refused_in_the_apis_terms() -> None:
    with pytest.raises(InputError, match=r"^voxel_size='z=1,y=2um': name each of z, y, x once with a number, e\.g\. "
                                         r"voxel_size='z=2,y=0\.5,x=0\.5um', or give a tuple \(z, y, x\), e\.g\. voxel_size=\(2\.0, 0\.5, 0\.5\)$"):
        api.voxel_size_value("z=1,y=2um", None)
    with pytest.raises(InputError, match=r"^voxel_size='z=-1,y=2,x=1um': sizes must be positive, e\.g\. voxel_size='z=2,y=0\.5,x=0\.5um'$"):
        api.voxel_size_value("z=-1,y=2,x=1um", None)
