"""Run bundles (shared/BUNDLE.md): read the inputs, write the outputs."""

from sitenode.bundle.io import BundleInputs, load_bundle, write_outputs

__all__ = ["BundleInputs", "load_bundle", "write_outputs"]
