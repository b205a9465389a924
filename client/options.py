"""Every option of ``segment``, described once: its keyword (the API's, and the spec field it
fills), its command-line flag, its default and its help.

The command line takes its flags and help from here; a test holds the API's signature and
docstring, the specs' fields and the napari widget's keywords to it (tests/client/test_option_contract.py).
Messages are written with the flags (``pass --overwrite``); `in_terms`
renders them as what the caller touched: ``overwrite=True`` for the API, the field for napari.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from skoots_export.contract.triples import TRIPLE_HELP

from .choices import Device, LabelsDtype, NgffVersion, Precision, Runtime, SharedMemory
from .errors import ClientError

__all__ = ["TILE_DEFAULT", "TILE_WORDS", "Option", "OPTIONS", "FLAGS", "Render", "as_flag", "as_keyword", "in_terms", "render"]

TILE_DEFAULT = "crop"  # --tile's default, the one place it is set: "crop" (the model's crop) or "auto"
TILE_WORDS = ("auto", "crop")  # --tile's words; else a triple


@dataclass(frozen=True)
class Option:
    """One option of ``segment``: ``name`` is the API keyword (and the field of ``spec``, the spec
    class it fills, where it fills one by that name); ``flag`` the command line's; ``default`` the
    same in both."""

    name: str
    flag: str
    default: Any
    help: str
    short: str | None = None
    spec: str | None = None

    @property
    def boolean(self) -> bool:
        return isinstance(self.default, bool)

    @property
    def values(self) -> tuple[str, ...]:
        """The words that are this option's values (its choices), so ``--device gpu`` reads as one."""
        if isinstance(self.default, Enum):
            return tuple(str(member.value) for member in type(self.default))
        if self.name == "tile":
            return TILE_WORDS
        return ("auto", "dtype", "minmax", "percentile", "mean-std") if self.name == "normalize" else ()


_ALL = (
    Option('url', '--url', None,
           'Triton gRPC address HOST:PORT; repeat to spread crops over several servers. Without it the model runs in this process.'),
    Option('model', '--model', None,
           "Model name on the server / in the repository (default: the SKOOTS model there; of one export's variants the libtorch, then OpenVINO, then Python-backend one); in-process, also a SKOOTS BioImage Model Zoo package (.zip from skoots export --bioimageio).", spec='ModelSpec'),
    Option('repository', '--repository', Path("model_repository"),
           'Model repository for the in-process (no --url) mode.', short='-r', spec='ModelSpec'),
    Option('out', '--out', None,
           'Output labels: .tif/.tiff, .zarr or .ome.zarr, or precomputed://PATH-or-URL (Neuroglancer segmentation) or n5://PATH-or-URL; s3://… and gs://… write precomputed (default: VOLUME_labels.tif beside the input).', short='-o', spec='OutputSpec'),
    Option('overwrite', '--overwrite', False,
           'Replace an existing output.', spec='OutputSpec'),
    Option('channel', '--channel', None,
           'Channel of multi-channel input (default: the only one; channel 2 when there are more than 3, with a warning).', spec='InputSpec'),
    Option('axes', '--axes', None,
           "Axis order of the file as Fiji/napari name the axes, one letter per dimension: Z, Y (rows), X (columns), optionally C (channel) and T (a single time point), e.g. ZYX (the default reading), XYZ, YXZ, ZCYX, CZYX. Overrides the file's own axis names.", spec='InputSpec'),
    Option('normalize', '--normalize', None,
           "How voxels become network input: auto (the model's rule: its dataset mean/std, else x/2**16 for uint16, x/2**8 for uint8, float as is), dtype (that dtype rule even when the model has a mean/std), minmax ((x - min) / (max - min)), percentile[:LOW,HIGH] ((x - pLOW) / (pHIGH - pLOW), default 1,99.8, not clipped), or mean-std:M,S ((x - M) / S). minmax and percentile take their numbers once from a fixed sample of the whole volume, so every crop gets the same mapping.", spec='InputSpec'),
    Option('batch', '--batch', None,
           "Crops per request (default and maximum: the model's max_batch_size).", spec='ModelSpec'),
    Option('window', '--window', 4,
           'Requests in flight per server.', spec='ModelSpec'),
    Option('timeout', '--timeout', 120.0,
           'Seconds a request may take before it is retried.', spec='ModelSpec'),
    Option('retries', '--retries', None,
           'At most this many resends per request (default: as many as --retry-for allows).', spec='ModelSpec'),
    Option('retry_for', '--retry-for', 60.0,
           'Seconds a request that fails (server unavailable, past --timeout, an answer missing outputs) is sent again, waiting 0.5 s, 1 s, 2 s, … (at most 30 s) between tries; longer than a server restart. A server still failing after them drops out, and the run fails when none is left.', spec='ModelSpec'),
    Option('shared_memory', '--shared-memory', SharedMemory.NONE,
           "How requests and answers reach a server on this machine: none (gRPC messages) or system (Triton system shared memory in /dev/shm: no serialising, no copies; the --url must be a loopback address, and the server must share /dev/shm with the client). Regions are unregistered and removed when the run ends, however it ends.", spec='ModelSpec'),
    Option('device', '--device', Device.AUTO,
           'Post-processing device: auto (GPU with CuPy when present), cpu or gpu.', spec='ModelSpec'),
    Option('crop', '--crop', None,
           "Override the model's crop. " + TRIPLE_HELP, spec='ModelSpec'),
    Option('tile', '--tile', TILE_DEFAULT,
           "How much of the volume the network sees at once: crop (the model's crop, what it was trained on), auto (the largest tile of whole crop steps, keeping the model's overlap, that fits the memory budget: in-process, the network's activation estimate against the memory available after post-processing; on Triton, the model config's max_tile_voxels), or a size. Fewer network input voxels per output voxel (the summary says how many); labels may differ slightly from the model crop's near its borders. --reference-borders always uses the model's crop. " + TRIPLE_HELP, spec='ModelSpec'),
    Option('overlap', '--overlap', None,
           "Override the model's overlap. " + TRIPLE_HELP, spec='ModelSpec'),
    Option('embedding_iterations', '--embedding-iterations', None,
           "Override the model's embedding iterations N.", spec='ModelSpec'),
    Option('reference_borders', '--reference-borders', False,
           "Leave the reference's unwritten frames background, to reproduce published results.", spec='ModelSpec'),
    Option('save_intermediates', '--save-intermediates', False,
           'Also write skeleton, vectors and probability beside the output (.zarr).', spec='OutputSpec'),
    Option('quiet', '--quiet', False,
           'No progress bar and no summary.', short='-q'),
    Option('preview', '--preview', None,
           'Also write a PNG: the raw max projection over Z beside the labels in distinct colours.', spec='OutputSpec'),
    Option('resume', '--resume', False,
           'Keep finished crops in a work directory as they arrive (OUT.work beside the output) and take those already there: a killed or failed run continues where it stopped. Removed once the labels are written.', spec='ResumeSpec'),
    Option('work_dir', '--work-dir', None,
           'Work directory for --resume (implies it): a folder, or with --blockwise an s3:// or gs:// URL, which no worker needs a shared file system for.', spec='ResumeSpec'),
    Option('ssl', '--ssl', False,
           'Talk to the servers over TLS (gRPC); implied by the certificate options.'),
    Option('root_cert', '--root-cert', None,
           "CA certificate (PEM) to trust for --ssl, e.g. the one that signed a self-made server certificate (default: the system's)."),
    Option('private_key', '--private-key', None,
           'Client key (PEM), for servers that require client certificates; with --cert-chain.'),
    Option('cert_chain', '--cert-chain', None,
           'Client certificate chain (PEM) for --private-key.'),
    Option('blockwise', '--blockwise', False,
           "Segment block by block on a Dask cluster (same labels): for volumes larger than memory, or to spread the client's work over processes and machines. Chosen by itself when the volume would not fit in memory.", spec='ClusterSpec'),
    Option('block', '--block', None,
           'Block size X,Y,Z in voxels for --blockwise, rounded to whole crop steps (default: the largest blocks whose estimated work fits 1.5 GB; measured, a worker then peaks near 1.5 GB with a small model in-process and ~0.8 GB with none; a large model in-process adds its weights and activations). The summary says the block used.', spec='ClusterSpec'),
    Option('workers', '--workers', None,
           'Worker processes of the local Dask cluster for --blockwise (default: the cores).', spec='ClusterSpec'),
    Option('threads_per_worker', '--threads-per-worker', 1,
           'Threads per Dask worker process for --blockwise.', spec='ClusterSpec'),
    Option('scheduler', '--scheduler', None,
           "Join the Dask cluster at tcp://HOST:PORT instead of starting a local one (implies --blockwise; workers must see the input, the work directory and the output's folder).", spec='ClusterSpec'),
    Option('cluster', '--cluster', None,
           "Start the Dask workers as batch jobs on a slurm, pbs, lsf or sge cluster (dask-jobqueue, the cluster extra; implies --blockwise): run from a login node; each job's cores, memory, queue and walltime from --cluster-option or dask's ~/.config/dask/jobqueue.yaml. A job that ends (walltime, preemption) is replaced and its blocks redone.", spec='ClusterSpec'),
    Option('cluster_options', '--cluster-option', None,
           'KEY=VALUE for --cluster, repeatable: a keyword of dask-jobqueue\'s cluster (queue, walltime=01:00:00, memory=16GB, cores=4, processes, job_extra_directives, job_script_prologue, interface, log_directory, ...); numbers, true/false and [YAML lists] are read as such.', spec='ClusterSpec'),
    Option('max_jobs', '--max-jobs', None,
           'At most this many worker jobs at once for --cluster (default 1): adaptive, between 1 and N as the blocks waiting need.', spec='ClusterSpec'),
    Option('voxel_size', '--voxel-size', None,
           'Voxel size, with a unit suffix (0.5,0.5,2um or x=0.5,y=0.5,z=2um) or --unit; default: what the input file states (OME-Zarr scale, OME-TIFF PhysicalSize, ImageJ spacing/resolution). Written to the output and used by --table. ' + TRIPLE_HELP, spec='InputSpec'),
    Option('unit', '--unit', None,
           'Unit of --voxel-size: um (default), nm, mm, cm, m or angstrom; alone, the unit of a scale the file states without one.'),
    Option('table', '--table', None,
           'Also write the instance table (.csv, or .parquet with pyarrow): one row per instance — voxels, volume, centroid, bounding box, raw intensity, skeleton length, touches border; see `skoots-client measure --help`.', spec='OutputSpec'),
    Option('skeletons', '--skeletons', False,
           "Also write each instance's skeleton as a graph: the skeleton the network predicted for it, traced by kimimaro (TEASAR), with a radius per vertex. A precomputed:// --out gets Neuroglancer skeletons (its info's skeletons key); a TIFF, .zarr or .ome.zarr --out, or --labels-into, gets one SWC file per instance, ID.swc, in a folder LABELS_skeletons beside the labels (Fiji's SNT and napari read SWC). With --table, the table gains the graphs' lengths (skeleton_graph_length_UNIT). Not for n5:// outputs.", spec='OutputSpec'),
    Option('meshes', '--meshes', False,
           "Also write each instance's surface mesh (zmesh: marching cubes, simplified to within a voxel) into a precomputed:// --out, in Neuroglancer's legacy mesh format (the info's mesh key; nm), in memory or block by block on the workers; Neuroglancer and CloudVolume show them. See docs/outputs.md.", spec='OutputSpec'),
    Option('labels_into', '--labels-into', None,
           "Write the labels into this OME-Zarr image's labels/NAME group (napari shows them over the image), with the image's resolution levels; the image's own arrays are not touched. Without --out, nothing else is written; with --blockwise, written block by block (then without --out).", spec='OutputSpec'),
    Option('label_name', '--label-name', 'skoots',
           'NAME of the labels group for --labels-into.', spec='OutputSpec'),
    Option('level', '--level', None,
           "Segment resolution level N of an OME-Zarr image, a precomputed volume (its N-th scale) or an N5 group (its dataset sN); 0 = full resolution, with that level's voxel size; the same as giving the level's path.", spec='InputSpec'),
    Option('ngff_version', '--ngff-version', NgffVersion.V0_4,
           "OME-NGFF version of an .ome.zarr --out: 0.4 (Zarr v2) or 0.5 (Zarr v3). --labels-into follows the image's.", spec='OutputSpec'),
    Option('mask', '--mask', None,
           'Foreground mask volume (nonzero = foreground), any resolution, same axes as the input: crops whose whole window holds no foreground are not inferred and stay background.', spec='InputSpec'),
    Option('min_size', '--min-size', 0,
           'Remove instances of fewer than this many voxels (counted over the whole volume, after assignment) before renumbering; the same in the in-memory and blockwise modes. Voxels, not a physical volume: with --voxel-size 0.5,0.5,2um, 0.5 um3 is 1 voxel. Default 0: keep every instance.', spec='OutputSpec'),
    Option('labels_dtype', '--labels-dtype', LabelsDtype.UINT32,
           "The labels' type in every output format (TIFF, Zarr, OME-Zarr, N5, precomputed): uint32 (past 2**32 - 1 instances uint64, with a note), or uint64 (what Paintera and most EM tools expect in N5 and Zarr).", spec='OutputSpec'),
    Option('skip_below', '--skip-below', None,
           'Do not infer crops whose raw maximum (input units, before normalising) is below this value; they stay background.', spec='InputSpec'),
    Option('fill_missing', '--fill-missing', False,
           'Read chunks missing from an N5, precomputed or Zarr input as zeros (and say how many), instead of failing: a missing chunk is an error by default.', spec='InputSpec'),
    Option('runtime', '--runtime', Runtime.AUTO,
           'In-process (no --url) inference runtime: auto (a CUDA GPU with TorchScript, else OpenVINO on the CPU when the model has its IR, else TorchScript on the CPU), openvino, torchscript or cuda.', spec='ModelSpec'),
    Option('threads', '--threads', None,
           'In-process inference threads on the CPU (default: all cores).', spec='ModelSpec'),
    Option('precision', '--precision', Precision.FP32,
           'In-process precision: fp32, or bf16 with OpenVINO on CPUs with AVX512_BF16 or AMX (faster; vectors differ by ~1e-2).', spec='ModelSpec'),
    Option('roi', '--roi', None,
           "Segment only this box of the volume, in z, y, x order from its first voxel: z0:z1,y0:y1,x0:x1 in voxels (half open; an empty side is the volume's edge: :,100:612,:), or with a unit after the last number in physical units of the voxel size (0:2,0:10,0:10um; widened to whole voxels). Only the box is read; the labels are the box's, and their metadata states where it sits (the input's offset + the box's start).", spec='InputSpec'),
    Option('s3_endpoint', '--s3-endpoint', None,
           'Endpoint of an S3-compatible store that is not AWS (MinIO, Ceph, ...), e.g. http://127.0.0.1:9000, for s3:// input and --out; credentials and region come from the AWS_* variables or ~/.aws.'),
)

OPTIONS: dict[str, Option] = {option.name: option for option in _ALL}
FLAGS: dict[str, Option] = {option.flag: option for option in _ALL}

# Options of ``measure`` that ``segment`` lacks, so its messages render too.
_MEASURE = (Option("raw", "--raw", None, "The volume the labels segment."),)
_RENDERED: dict[str, Option] = {**FLAGS, **{option.flag: option for option in _MEASURE}}

Render = Callable[[Option, "str | None"], str]
"""How a caller names an option, and the value a message gives it (None: none follows the flag)."""

_MENTION = re.compile(r"(?<![\w-])(?P<flag>--[a-z][a-z0-9-]*)(?: (?P<value>(?!--)\S+?)(?=[:;,.)]*(?:\s|$)))?")
_TERMS: ContextVar[Render | None] = ContextVar("skoots_option_terms", default=None)


def as_flag(option: Option, value: str | None) -> str:
    """The command line's terms: ``--overwrite``, ``--crop 8,8,4`` (messages are written so)."""
    return option.flag if value is None else f"{option.flag} {value}"


def as_keyword(option: Option, value: str | None) -> str:
    """The API's terms: a switch as ``overwrite=True``, others as ``crop=`` or ``device='gpu'``.

    >>> as_keyword(OPTIONS["overwrite"], None), as_keyword(OPTIONS["device"], "gpu"), as_keyword(OPTIONS["min_size"], "-1")
    ('overwrite=True', "device='gpu'", 'min_size=-1')
    """
    if option.boolean:
        return f"{option.name}=True"
    if value is None:
        return f"{option.name}="
    shown = value if value[0] in "'\"" or _number(value) or re.fullmatch(r"-?\d[\d.]*", value) else repr(value)  # 0..3 as is
    return f"{option.name}={shown}"


def render(text: str, term: Render) -> str:
    """``text`` (written with ``--flags``) with each option named in ``term``'s way; a word after a
    flag is its value only where it reads as one (a number, a path, quoted text, one of its choices).

    >>> render("pass --overwrite to replace it; drop --device gpu", as_keyword)
    "pass overwrite=True to replace it; drop device='gpu'"
    >>> render("--window and --batch must be at least 1", as_keyword)
    'window= and batch= must be at least 1'
    """

    def one(match: re.Match[str]) -> str:
        option, value = _RENDERED.get(match["flag"]), match["value"]
        if option is None:
            return match[0]
        if value is not None and (option.boolean or not _is_value(option, value)):
            return f"{term(option, None)} {value}"
        return term(option, value)

    return _MENTION.sub(one, text)


@contextmanager
def in_terms(term: Render) -> Iterator[Render]:
    """Inside, a `ClientError` raised from anywhere names the
    options in ``term``'s way (rewritten once, as it leaves); yields the terms in force. The
    outermost caller's terms win: the command line runs the API, and keeps its flags."""
    outer = _TERMS.get()
    if outer is not None:
        yield outer
        return
    token = _TERMS.set(term)
    try:
        yield term
    except ClientError as error:
        if len(error.args) == 1 and isinstance(error.args[0], str):
            error.args = (render(error.args[0], term),)
        raise
    finally:
        _TERMS.reset(token)


def _is_value(option: Option, word: str) -> bool:
    """Whether the word after a flag is its value: quoted text, a number or range, a path or URL,
    one of its choices, axis letters; not an English word or an aside in parentheses."""
    if word[0] in "([":
        return False
    return (word[0] in "'\"/.~{" or _number(word) or any(c in word for c in ":/=,.") or word in option.values
            or (option.name == "axes" and word.isalpha() and word.isupper()))


def _number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True
