"""The real peers the tests start or run (DESIGN.md §4): dcmtk's tools, dicom3tools'
dciodvfy, Orthanc, PostgreSQL, Redis and Chromium, with the helpers that find them
(`tools`). A missing peer skips its tests on a user's machine and fails them under CI=true.

Nothing here is a test module: tests, conftest files and benchmarks import from here."""
