"""Tenants and keys created at runtime, and spend per day: one interface (`base.Store`), two
backends (`sqlite.py`, the embedded default; `redis.py`, for workers and replicas), the
in-process key view (`view.py`) and how the app runs them (`runtime.py`)."""
