"""Shared test support: real services started on 127.0.0.1 and free ports, stopped by PID."""
