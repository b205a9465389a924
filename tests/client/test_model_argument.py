"""Issue 27 (5): ``model=`` that is a path is a repository: a missing one is named as such."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import skoots_client as skoots
from skoots_client.errors import ModelError


@pytest.mark.parametrize("model", ["/no/such/dir", Path("/no/such/dir"), "no/such"])
def test_a_missing_path_is_no_repository(tmp_path: Path, model) -> None:
    """It said ``no model '/no/such/dir' in repository model_repository``."""
    with pytest.raises(ModelError, match=rf"^no model repository at {model} \(no such folder\); give a folder written by skoots export, "
                                         rf"or a model's name in repository='{tmp_path}'$"):
        skoots.segment(np.zeros((8, 8, 8), np.uint8), model=model, repository=tmp_path)


def test_a_folder_without_models_is_no_repository(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"^no model repository at \S+empty \(it holds no exported model: no \*/config\.pbtxt\)"):
        skoots.segment(np.zeros((8, 8, 8), np.uint8), model=str(tmp_path / "empty"), repository=tmp_path)


def test_a_name_is_still_looked_up_in_the_repository(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"^no model 'nosuch' in repository"):
        skoots.segment(np.zeros((8, 8, 8), np.uint8), model="nosuch", repository=tmp_path)
