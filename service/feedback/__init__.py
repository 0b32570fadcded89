"""Closing the loop: the prediction log, feedback (labels and business outcomes), realized metrics, export."""
