"""What the Triton endpoint checks without a server: answers and TLS files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skoots_client.errors import InputError
from skoots_client.model_source import Tls, _answer_problem
from skoots_export.model_config import SKELETON, VECTORS


@pytest.mark.parametrize(
    "vectors,skeleton,problem",
    [
        (np.zeros((2, 3, 8, 8, 4), np.float16), np.zeros((2, 1, 8, 8, 4), np.uint8), None),
        (np.zeros((2, 3, 8, 8, 4), np.float16), None, "no skeleton__1 in the answer"),
        (np.zeros((1, 3, 8, 8, 4), np.float16), np.zeros((2, 1, 8, 8, 4), np.uint8),
         "vectors__0 of float16 [1, 3, 8, 8, 4] instead of float16 [2, 3, 8, 8, 4]"),
        (np.zeros((2, 3, 8, 8, 4), np.float32), np.zeros((2, 1, 8, 8, 4), np.uint8),
         "vectors__0 of float32 [2, 3, 8, 8, 4] instead of float16 [2, 3, 8, 8, 4]"),
    ],
)
def test_an_answer_must_hold_every_output_asked_for_in_the_batchs_shape(vectors, skeleton, problem) -> None:
    assert _answer_problem((vectors, skeleton), [VECTORS, SKELETON], (2, 1, 8, 8, 4)) == problem


def test_tls_files_are_checked(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    Tls(tmp_path / "ca.pem").check()
    with pytest.raises(InputError, match=r"--private-key and --cert-chain come together"):
        Tls(private_key=tmp_path / "ca.pem").check()
    with pytest.raises(InputError, match=r"cannot read --root-cert \S+nope\.pem: No such file or directory"):
        Tls(tmp_path / "nope.pem").check()
    with pytest.raises(InputError, match=r"--cert-chain \S+notes\.txt is not a PEM file"):
        Tls(private_key=tmp_path / "ca.pem", cert_chain=tmp_path / "notes.txt").check()
