"""Benchmark harness: `python -m bench` measures the service against a minimal FastAPI wrapper and the raw model.

Nothing here is imported by the service; `make bench` installs what it needs (wrk, FastAPI, uvicorn).
"""
