"""Silent-failure signals: what the model decides, how its inputs drift, and how the service performs.

Takes arrays and label strings, never classifier objects. Only `metrics.py` imports prometheus_client.
"""
