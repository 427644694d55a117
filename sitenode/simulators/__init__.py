"""Device simulators shared by tests, the demo and users: they speak the real protocols."""
