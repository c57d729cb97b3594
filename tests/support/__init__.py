"""What tests share that is not a peer: the real CT series of ../shared/data and series
made from them, result rows for the outbox, the dashboard's test site. Not test modules:
tests, conftest files and benchmarks import from here (peers live in tests.peers)."""
