"""API keys and scopes: the keys file (`keys`), what each route needs (`guard`), and `python -m service.auth`.

Imports nothing heavy here: the command line reads and writes the keys file without loading scikit-learn or BentoML.
"""
