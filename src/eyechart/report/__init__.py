"""Reports: what a run leaves in its folder (JSON, JUnit XML, self-contained HTML) and prints."""
