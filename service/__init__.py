"""classifier-service: binary, multiclass, multilabel and hierarchical scikit-learn classifiers behind one API."""
