"""Repository scripts that are Python modules (`python -m scripts.<name>`)."""
