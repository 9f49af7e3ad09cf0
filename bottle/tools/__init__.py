"""One module per external CLI: pure argv builders, one runner, one error type each."""
