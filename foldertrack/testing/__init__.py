"""Test support shipped with the package: a pytest plug-in with the simulator and database fixtures,
so the project's suite and users testing their own rules share the same fixtures."""
