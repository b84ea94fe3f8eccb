"""Where a stream goes once its upstream answered: the relay loop (`loop.py`, pure timing in
`timing.py`), the stream around it (`stream.py`), its sinks and client (`sinks.py`,
`client.py`), early headers and heartbeats (`early.py`) and mid-stream resume (`resume.py`)."""
