"""Forecast providers for rolling-horizon runs (backtests now, the live node later)."""

from sitenode.forecast.providers import ForecastProvider, Persistence, SeasonalNaive, provider_for

__all__ = ["ForecastProvider", "Persistence", "SeasonalNaive", "provider_for"]
