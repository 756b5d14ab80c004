"""The error helpers the one-line reports share."""

from __future__ import annotations

import pytest

from alexnet_study.errors import ConfigError, first_line


def test_first_line_of_an_error_message() -> None:
    assert first_line(ValueError("  bad value\nsecond line\n")) == "bad value"
    assert first_line(ConfigError("optim.lr=0: must be a number > 0")) == "optim.lr=0: must be a number > 0"
    assert first_line(KeyboardInterrupt()) == "KeyboardInterrupt"  # an empty message: the type's name
    assert first_line(RuntimeError(" \n "), empty="") == ""


def test_an_unresolvable_target_is_one_line(make_cfg) -> None:
    from omegaconf import open_dict

    from alexnet_study.config.validate import check_targets

    cfg = make_cfg()
    with open_dict(cfg):
        cfg.optim._target_ = "${no.such.key}"
    with pytest.raises(ConfigError, match=r"^optim\._target_: cannot be resolved \(.*no\.such\.key.*\)$"):
        check_targets(cfg)
