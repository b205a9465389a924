"""``--cluster slurm|pbs|lsf|sge`` and ``--cluster-option KEY=VALUE``: which dask-jobqueue
cluster runs the workers as batch jobs, and the keywords it is given, read and checked before
any work (the rest comes from dask's config, ``~/.config/dask/jobqueue.yaml``)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from .errors import ClientError, InputError

__all__ = ["CLUSTERS", "JOBQUEUE_EXTRA", "MissingJobqueue", "cluster_class", "parse_cluster_options", "check_cluster_options"]

CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster", "sge": "SGECluster"}
JOBQUEUE_EXTRA = "pip install 'skoots-triton[cluster]'"
# Keywords that take a list (one #SBATCH line, one prologue command, one worker argument each):
# a repeated --cluster-option adds to the list, and a single value is a list of one.
_LISTS = {"job_extra_directives", "job_script_prologue", "worker_extra_args", "job_directives_skip"}
# The constructor's keywords no option may set: the cluster's own wiring, objects, and the
# spellings dask-jobqueue 0.9 deprecated (extra, job_extra, env_extra).
_NOT_OPTIONS = {"self", "scheduler", "name", "config_name", "base_class_kwargs", "args", "kwargs", "job_kwargs", "n_workers",
                "job_cls", "loop", "asynchronous", "security", "silence_logs", "scheduler_cls", "extra", "job_extra", "env_extra"}


class MissingJobqueue(ClientError):
    """``--cluster`` without dask-jobqueue installed."""


def cluster_class(kind: str) -> Any:
    """dask-jobqueue's cluster class for ``kind`` (``slurm``, ``pbs``, ``lsf``, ``sge``).

    Raises
    ------
    InputError
        ``kind`` is none of them.
    MissingJobqueue
        dask-jobqueue is not installed.
    """
    if kind not in CLUSTERS:
        raise InputError(f"--cluster {kind}: choose one of {', '.join(CLUSTERS)} (another cluster: start it and pass --scheduler)")
    try:
        import dask_jobqueue
    except ImportError as e:
        raise MissingJobqueue(f"--cluster {kind} starts its workers with dask-jobqueue, which is not installed: {JOBQUEUE_EXTRA}") from e
    return getattr(dask_jobqueue, CLUSTERS[kind])


def _valid_keys(cls: Any) -> list[str]:
    """The keywords of ``cls`` (its job class's, through the bases, and the cluster's own) an option may set."""
    from dask_jobqueue.core import JobQueueCluster

    owners = [*cls.job_cls.__mro__, *(c for c in cls.__mro__ if issubclass(c, JobQueueCluster))]
    names = {name for owner in owners if "__init__" in vars(owner) for name in inspect.signature(owner.__init__).parameters}
    return sorted(names - _NOT_OPTIONS)


def parse_cluster_options(texts: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` texts as keywords: ``cores=4`` an int, ``memory=16GB`` and ``walltime=01:00:00``
    text, ``nanny=false`` a bool, ``[a, b]`` / ``{k: v}`` YAML; a list keyword (``job_extra_directives``,
    ``job_script_prologue``, ``worker_extra_args``, ``job_directives_skip``) collects every value given.

    >>> parse_cluster_options(["cores=4", "walltime=01:00:00", "job_extra_directives=--gres=gpu:1", "job-extra-directives=-C v100"])
    {'cores': 4, 'walltime': '01:00:00', 'job_extra_directives': ['--gres=gpu:1', '-C v100']}
    """
    options: dict[str, Any] = {}
    for text in texts:
        key, equals, value = text.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or not key:
            raise InputError(f"--cluster-option {text!r}: give KEY=VALUE, e.g. walltime=01:00:00 or memory=16GB")
        parsed = _value(key, value.strip())
        if key in _LISTS:
            options.setdefault(key, []).extend(parsed if isinstance(parsed, list) else [parsed])
        else:
            options[key] = parsed
    return options


def _value(key: str, text: str) -> Any:
    """One option's value: a number, a bool, None, YAML's list or mapping, else the text."""
    if text[:1] in ("[", "{"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InputError(f"--cluster-option {key}={text}: not a YAML list or mapping ({str(e).splitlines()[0]})") from e
    words = {"true": True, "false": False, "none": None, "null": None}
    if text.lower() in words:
        return words[text.lower()]
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def check_cluster_options(kind: str, options: Mapping[str, Any]) -> None:
    """Refuse, in one line naming the valid ones, a keyword ``kind``'s cluster does not take.

    Raises
    ------
    InputError
        An unknown key (or an unknown ``kind``).
    MissingJobqueue
        dask-jobqueue is not installed.
    """
    cls = cluster_class(kind)
    valid = _valid_keys(cls)
    unknown = [key for key in options if key not in valid]
    if unknown:
        raise InputError(f"--cluster-option {unknown[0]}: not an option of dask-jobqueue's {cls.__name__}; valid: {', '.join(valid)}")
