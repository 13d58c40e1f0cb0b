"""The local model server: serves the Pusher's directory over TF Serving's REST API.

TF Serving is the production choice (``deploy/``); this server is the local
default, and the one tests drive over real HTTP. Both read the same layout:
``<serving>/<model_name>/<version>/saved_model.pb``.
"""
