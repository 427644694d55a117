"""portfolio.yaml's settings: the coincident-peak price, valid or refused naming its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portfolio.config import PortfolioConfig, load_portfolio_config
from sitenode.errors import InvalidInput
from sitenode.model.validation import parse

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "portfolio.yaml"


def test_the_peak_price_is_off_unless_given() -> None:
    assert PortfolioConfig().portfolio.coincident_peak_price_per_kw == 0.0
    config = parse(PortfolioConfig, {"portfolio": {"coincident_peak_price_per_kw": 7.5}})
    assert config.portfolio.coincident_peak_price_per_kw == 7.5


def test_the_example_config_documents_the_peak_price() -> None:
    assert "coincident_peak_price_per_kw" in EXAMPLE.read_text()
    config, _ = load_portfolio_config(EXAMPLE)
    assert config.portfolio.coincident_peak_price_per_kw >= 0


@pytest.mark.parametrize("value", [-1, -0.01, float("inf"), float("nan"), "dear"])
def test_a_bad_peak_price_is_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        parse(PortfolioConfig, {"portfolio": {"coincident_peak_price_per_kw": value}})
    (violation,) = err.value.violations
    assert violation.field == "portfolio.coincident_peak_price_per_kw"


def test_a_bad_peak_price_in_a_file_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "portfolio.yaml"
    path.write_text("portfolio:\n  coincident_peak_price_per_kw: -3\n")
    with pytest.raises(InvalidInput) as err:
        load_portfolio_config(path)
    (violation,) = err.value.violations
    assert violation.field == "portfolio.coincident_peak_price_per_kw"
    assert "-3" in violation.description
