"""Device protocols: SunSpec register maps (pure) and the adapters that speak to devices."""
