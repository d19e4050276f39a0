"""Turning records into what goes in a paper: tables (markdown, LaTeX, CSV) and figures."""
