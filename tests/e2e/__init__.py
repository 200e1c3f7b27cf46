"""End-to-end tests: a real fpgacspd process on real sockets (a package so its conftest has its own name)."""
