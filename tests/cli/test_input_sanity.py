"""Issue 10: the files microscopists really have give a correct result, a warning that names
the fix, or a one-line refusal — never a silent wrong answer, never a lost input.

Each case writes a real file of its kind (tifffile, zarr) and segments it with the lively model
in-process (``skoots_client.segment``, the Python API the CLI runs: a return is exit 0, and what
it warns is collected) or, where the exit code and the one stderr line are the point, through
the real ``skoots-client`` console script. Refusals that fit the bad-input catalogue live there
(``test_segment_cli.py``: ``rgb-2-d``, ``float32-0-255``, ``axes-*``, ``normalize-*``).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage
from test_segment_cli import run_client

import skoots_client
from skoots_client.errors import InputError, OutputError


def blobs(shape_zyx=(8, 40, 32), seed: int = 0) -> np.ndarray:
    """Smooth blobs in [0, 1] as float64 ``[Z, Y, X]``; the lively model finds a few instances."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape_zyx), sigma=(1, 3, 3))
    return (field - field.min()) / (field.max() - field.min())


def segment(path: Path, out: Path, repository: Path, **options) -> tuple[str, list[str], np.ndarray]:
    """Summary, warnings and labels (as written, ``[Z, Y, X]``) of an in-process run."""
    warnings: list[str] = []
    text = skoots_client.segment(path, out=out, repository=repository, device="cpu", quiet=True, overwrite=True,
                                 warn=warnings.append, **options).summary
    return text, warnings, tifffile.imread(out)


def instances(summary: str) -> int:
    return int(summary.split(" instances")[0].rsplit(" ", 1)[-1])


def test_float_0_to_255_is_refused_until_normalize_is_given(e2e_repository: Path, tmp_path: Path) -> None:
    """What Fiji's 32-bit conversion writes: 164 wrong instances before; now one line, exit 2."""
    tifffile.imwrite(tmp_path / "f.tif", (blobs() * 255).astype(np.float32))
    refused = run_client("segment", "f.tif", "-r", e2e_repository, "--device", "cpu", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "error: the float32 volume's values span 0 to 255, but the model takes float input as already normalised "
        "to [0, 1]; pass --normalize percentile (or minmax) to rescale it, or --normalize dtype to take it as is"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tif"]
    for rule, named in (("minmax", "normalisation minmax: (x - 0) / 255"), ("percentile", "normalisation percentile 1-99.8: ")):
        text, warnings, labels = segment(tmp_path / "f.tif", tmp_path / f"{rule}.tif", e2e_repository, normalize=rule)
        assert named in text and warnings == [] and instances(text) == labels.max() >= 1


def test_12_bit_data_in_uint16_is_refused_before_inference_until_normalize_is_given(e2e_repository: Path, tmp_path: Path) -> None:
    """Issue 17: a warning, 90 s of inference and an all-zero label file before; now one line,
    exit 2, nothing written, in the in-memory and the blockwise mode alike."""
    tifffile.imwrite(tmp_path / "c.tif", (blobs() * 4095).astype(np.uint16))
    refused = run_client("segment", "c.tif", "-r", e2e_repository, "--device", "cpu", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    line = ("the uint16 volume uses only 0 to 4095 of its range 0 to 65535 (e.g. 12-bit camera data), so under the dtype rule "
            "x / 65536 the model sees it nearly black; pass --normalize percentile (or minmax) to rescale it, "
            "or --normalize dtype to take it as is")
    assert refused.stderr.splitlines() == [f"error: {line}"]
    in_keywords = line.replace("--normalize percentile", "normalize='percentile'").replace("--normalize dtype", "normalize='dtype'")
    with pytest.raises(InputError, match=re.escape(in_keywords)):
        skoots_client.segment(tmp_path / "c.tif", out=tmp_path / "b.zarr", repository=e2e_repository, device="cpu", quiet=True,
                              blockwise=True, block=(4, 16, 16), workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif"]
    text, warnings, labels = segment(tmp_path / "c.tif", tmp_path / "dtype.tif", e2e_repository, normalize="dtype")
    assert "normalisation dtype (x / 65536)" in text and not any("12-bit" in w for w in warnings), "--normalize dtype insists"
    fixed, _, _ = segment(tmp_path / "c.tif", tmp_path / "p.tif", e2e_repository, normalize="percentile")
    assert instances(fixed) >= 1, "the fix the refusal names finds objects"


@pytest.mark.parametrize("blockwise", [False, True])
def test_a_mask_without_foreground_or_skip_below_above_the_maximum_is_refused_before_inference(
    e2e_repository: Path, tmp_path: Path, blockwise: bool
) -> None:
    tifffile.imwrite(tmp_path / "v.tif", (blobs() * 65535).astype(np.uint16))
    tifffile.imwrite(tmp_path / "m.tif", np.zeros((4, 10, 8), np.uint8))
    options = dict(out=tmp_path / "l.zarr", repository=e2e_repository, device="cpu", quiet=True, resume=True,
                   blockwise=blockwise, block=(4, 16, 16), workers=1)
    with pytest.raises(InputError, match=r"^mask= has no foreground \(no nonzero voxel\): every crop would be skipped"):
        skoots_client.segment(tmp_path / "v.tif", mask=tmp_path / "m.tif", **options)
    with pytest.raises(InputError, match=r"^skip_below=70000 is above every voxel of the volume \(its maximum is 65535\)"):
        skoots_client.segment(tmp_path / "v.tif", skip_below=70000, **options)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "v.tif"], "no work directory, no output"


def test_int16_is_segmented_as_the_same_voxels_shifted_into_uint16(e2e_repository: Path, tmp_path: Path) -> None:
    """int16 under the dtype rule, (x + 2**15) / 2**16, is uint16's rule on x + 2**15: the same
    labels, in the in-memory and the blockwise mode; a narrow int16 span is refused as 12-bit
    uint16 is."""
    shifted = (blobs() * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "u.tif", shifted)
    tifffile.imwrite(tmp_path / "s.tif", (shifted.astype(np.int32) - 2**15).astype(np.int16))
    text, warnings, expected = segment(tmp_path / "u.tif", tmp_path / "u_labels.tif", e2e_repository)
    signed, warnings_signed, labels = segment(tmp_path / "s.tif", tmp_path / "s_labels.tif", e2e_repository)
    assert expected.max() >= 1 and np.array_equal(labels, expected) and warnings_signed == warnings
    assert "int16, axes ZYX" in signed and "normalisation dtype ((x + 32768) / 65536), the model's rule" in signed
    skoots_client.segment(tmp_path / "s.tif", out=tmp_path / "b.zarr", repository=e2e_repository, device="cpu", quiet=True,
                          blockwise=True, block=(4, 16, 16), workers=1)
    assert np.array_equal(zarr.open_array(str(tmp_path / "b.zarr"), mode="r")[...], expected)
    tifffile.imwrite(tmp_path / "ct.tif", (blobs() * 4095 - 1024).astype(np.int16))
    with pytest.raises(InputError, match=r"^the int16 volume spans only -1024 to 3071 of its range -32768 to 32767"):
        segment(tmp_path / "ct.tif", tmp_path / "ct_labels.tif", e2e_repository)
    _, _, stretched = segment(tmp_path / "ct.tif", tmp_path / "ct_labels.tif", e2e_repository, normalize="percentile")
    assert stretched.max() >= 1


def test_float_slightly_beyond_1_warns_and_the_warning_changes_nothing(e2e_repository: Path, tmp_path: Path) -> None:
    """Within [-1, 2] the dtype rule may still be right: a warning, and labels with objects in them
    equal to those of the same rule chosen explicitly (no warning)."""
    tifffile.imwrite(tmp_path / "f.tif", (blobs() * 1.4).astype(np.float32))
    text, warnings, labels = segment(tmp_path / "f.tif", tmp_path / "auto.tif", e2e_repository)
    assert warnings == [
        "the float32 volume's values span 0 to 1.4, but the model takes float input as already normalised to [0, 1]; "
        "if the labels look wrong, pass normalize='percentile'"
    ]
    _, quiet, same = segment(tmp_path / "f.tif", tmp_path / "dtype.tif", e2e_repository, normalize="dtype")
    assert quiet == [] and np.array_equal(labels, same) and labels.max() >= 1
    assert "normalisation dtype (float taken as is)" in text


def test_zcyx_stack_says_which_channel_it_took(e2e_repository: Path, tmp_path: Path) -> None:
    """ImageJ hyperstack, signal in channel 0 of 4: the default (channel 2) is said out loud."""
    signal = (blobs() * 65535).astype(np.uint16)
    zcyx = np.zeros((signal.shape[0], 4, *signal.shape[1:]), np.uint16)
    zcyx[:, 0] = signal
    zcyx[:, 2] = 100
    tifffile.imwrite(tmp_path / "h.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    tifffile.imwrite(tmp_path / "plain.tif", signal)
    text, warnings, _ = segment(tmp_path / "h.tif", tmp_path / "d.tif", e2e_repository)
    assert warnings[0] == f"{tmp_path / 'h.tif'} has 4 channels; segmenting channel 2 (the default for more than 3); pick another with channel=0..3"
    assert "axes ZCYX (from the file's metadata), channel 2 of 4 (default for more than 3 channels; pick with --channel)" in text
    assert any(w.startswith("no instances found") for w in warnings)
    text, warnings, labels = segment(tmp_path / "h.tif", tmp_path / "c0.tif", e2e_repository, channel=0)
    assert warnings == [] and "channel 0 of 4 (--channel 0)" in text
    _, _, plain = segment(tmp_path / "plain.tif", tmp_path / "p.tif", e2e_repository)
    assert np.array_equal(labels, plain) and labels.max() >= 1


@pytest.mark.parametrize("fmt", ["tif", "zarr"])
def test_a_stack_saved_x_y_z_gives_the_same_labels_with_axes_xyz(fmt: str, e2e_repository: Path, tmp_path: Path) -> None:
    """numpy ``[x][y][z]`` saved as is: without --axes a hint, with it the ZYX file's labels."""
    zyx = (blobs((8, 40, 32)) * 65535).astype(np.uint16)
    xyz = np.ascontiguousarray(zyx.transpose(2, 1, 0))
    tifffile.imwrite(tmp_path / "zyx.tif", zyx)
    if fmt == "tif":
        tifffile.imwrite(tmp_path / "xyz.tif", xyz)
    else:
        zarr.create_array(str(tmp_path / "xyz.zarr"), data=xyz, chunks=(16, 16, 8))
    source = tmp_path / f"xyz.{fmt}"
    _, _, expected = segment(tmp_path / "zyx.tif", tmp_path / "zyx_labels.tif", e2e_repository)
    text, warnings, labels = segment(source, tmp_path / "xyz_labels.tif", e2e_repository, axes="XYZ")
    assert "input z 8, y 40, x 32, uint16, axes XYZ (from --axes)" in text and warnings == []
    assert labels.shape == zyx.shape and np.array_equal(labels, expected) and expected.max() >= 1
    _, warnings, _ = segment(source, tmp_path / "as_is.tif", e2e_repository)
    assert warnings[0] == (
        f"{source} reads as z 32, y 40, x 8 (axes ZYX): its last axis is much shorter than the others, as Z usually is; "
        "if the stack was saved with Z last, declare its order with axes= (e.g. axes='YXZ' or XYZ)"
    )


def test_a_constant_volume_warns_and_exits_0(e2e_repository: Path, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "k.tif", np.full((8, 32, 32), 1000, np.uint16))
    result = run_client("segment", "k.tif", "-r", e2e_repository, "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "warning: every sampled voxel of the volume is 1000: there is nothing to segment — check the file, --channel and --axes"
    assert len(lines) == 2 and lines[1].startswith("warning: no instances found")
    assert "0 instances" in result.stdout and not tifffile.imread(tmp_path / "k_labels.tif").any()


def test_zero_instances_are_flagged_with_the_option_for_each_cause(e2e_repository: Path, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "n.tif", (blobs((8, 32, 32), seed=4) * 65535).astype(np.uint16))
    text, warnings, labels = segment(tmp_path / "n.tif", tmp_path / "o.tif", e2e_repository)
    assert instances(text) == 0 and not labels.any()
    assert warnings == [
        "no instances found; likely causes: intensities the model does not expect (try normalize='percentile'), "
        "the wrong channel (channel=), the wrong axis order (axes=), or the model's constants "
        "(re-export with skoots export --dataset-mean/--dataset-std or --prob-threshold)"
    ]


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (following nothing) and a hash of its bytes."""
    return {
        str(p.relative_to(root)): "link" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()
    }


def as_keywords(pattern: str) -> str:
    r"""A pattern of the command line's message as the API words it: ``--out v\.tif`` → ``out='v\.tif'``;
    ``--save-intermediates`` (a switch) → ``save_intermediates=True``."""
    pattern = pattern.replace("--save-intermediates", "save_intermediates=True")
    return re.sub(r"--([a-z-]+) (\S+)", lambda m: f"{m[1].replace('-', '_')}='{m[2]}'", pattern)


@pytest.mark.parametrize(
    "case,args,pattern",
    [
        ("same-path", ["v.tif", "--out", "v.tif"], r"--out v\.tif is the input v\.tif"),
        ("same-file-other-spelling", ["v.tif", "--out", "./sub/../v.tif"], r"--out sub/\.\./v\.tif is the input v\.tif"),
        ("hard-link", ["v.tif", "--out", "hard.tif"], r"--out hard\.tif is the input v\.tif"),
        ("symlink", ["v.tif", "--out", "soft.tif"], r"--out soft\.tif is the input v\.tif"),
        ("inside-the-zarr-store", ["in.zarr", "--out", "in.zarr/labels.tif"], r"--out in\.zarr/labels\.tif lies inside the input in\.zarr"),
        ("the-zarr-store", ["in.zarr", "--out", "in.zarr"], r"--out in\.zarr is the input in\.zarr"),
        ("a-store-holding-the-input", ["outer.zarr/raw.tif", "--out", "outer.zarr"], r"--out outer\.zarr holds the input outer\.zarr/raw\.tif"),
        ("save-intermediates", ["v_intermediates.zarr", "--out", "v.zarr", "--save-intermediates"], r"--save-intermediates v_intermediates\.zarr is the input"),
        ("preview", ["v.tif", "--out", "o.tif", "--preview", "soft.tif"], r"--preview soft\.tif is the input v\.tif"),
        ("work-dir", ["in.zarr", "--out", "o.tif", "--work-dir", "in.zarr"], r"--work-dir in\.zarr is the input in\.zarr"),
        ("work-dir-holding-the-input", ["v.tif", "--out", "o.tif", "--work-dir", "."], r"--work-dir \. holds the input v\.tif"),
    ],
)
def test_the_input_is_never_overwritten_even_with_overwrite(
    case: str, args: list[str], pattern: str, e2e_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the console script for the plain cases (exit 2, the one line); the others through
    ``skoots_client.segment``, whose ``OutputError`` is that line."""
    data = (blobs() * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "v.tif", data)
    os.link(tmp_path / "v.tif", tmp_path / "hard.tif")
    (tmp_path / "soft.tif").symlink_to("v.tif")
    (tmp_path / "sub").mkdir()
    zarr.create_array(str(tmp_path / "in.zarr"), data=data)
    zarr.create_array(str(tmp_path / "v_intermediates.zarr"), data=data)
    (tmp_path / "outer.zarr").mkdir()
    tifffile.imwrite(tmp_path / "outer.zarr" / "raw.tif", data)
    before = _tree(tmp_path)

    if case in ("same-path", "hard-link"):
        result = run_client("segment", *args, "--overwrite", "-r", e2e_repository, "--device", "cpu", cwd=tmp_path)
        assert result.returncode == 2 and result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr
        line = result.stderr.strip()
        assert line.endswith("; choose another path (the input is never overwritten, --overwrite or not)")
    else:
        monkeypatch.chdir(tmp_path)
        options = {"--out": "out", "--preview": "preview", "--work-dir": "work_dir"}
        given = {options[args[i]]: Path(args[i + 1]) for i in range(1, len(args) - 1) if args[i] in options}
        with pytest.raises(OutputError) as refused:
            skoots_client.segment(Path(args[0]), repository=e2e_repository, device="cpu", overwrite=True,
                                  save_intermediates="--save-intermediates" in args, **given)
        line = str(refused.value)
        pattern = as_keywords(pattern)  # the API names its keywords
        assert line.endswith("; choose another path (the input is never overwritten, overwrite=True or not)")
    assert re.search(pattern, line), line
    assert _tree(tmp_path) == before, "nothing written, nothing replaced"
