"""classifier-service: binary, multiclass, multilabel and hierarchical scikit-learn classifiers behind one API."""

from . import home

home.apply()  # before anything imports BentoML: every entry point resolves the same store and data folder
