"""The application: command line, search, evaluation."""
