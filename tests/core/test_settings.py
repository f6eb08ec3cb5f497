"""The ``[mepl]`` section and the whole settings: regions, required keys."""

from __future__ import annotations

import pytest

from mepl.cli.common import general_config
from mepl.config import ConfigError


@pytest.mark.parametrize(("written", "region"), [("GB", "GB"), ("us", "US"), (" de ", "DE"),
                                                 ("Fr", "FR")])
def test_default_region_is_checked_and_upper_cased(written: str, region: str) -> None:
    assert general_config({"mepl": {"default_region": written}}).default_region == region


@pytest.mark.parametrize("written", ["XX", "UK", "GBR", "", "12"])
def test_an_unknown_default_region_is_refused_naming_the_key(written: str) -> None:
    with pytest.raises(ConfigError) as err:
        general_config({"mepl": {"default_region": written}})
    assert err.value.key == "mepl.default_region"
    assert str(err.value).startswith("mepl.default_region: unknown region")
