"""pipeline.timing: stage lines in the log, also for a stage that fails."""

from __future__ import annotations

import logging
import re

import pytest

from pipeline.timing import stage


def test_stage_logs_start_and_duration(caplog):
    caplog.set_level(logging.INFO, logger="pipeline.stage")
    with stage("merge"):
        pass
    with pytest.raises(RuntimeError), stage("fits"):
        raise RuntimeError("disk full")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "stage merge: start" and re.fullmatch(r"stage merge: done in \d+\.\d\d s", messages[1])
    assert messages[2] == "stage fits: start" and messages[3].startswith("stage fits: done in")
