"""``recsys web``: the shop page and the operations dashboard (``web/server.py``), fed
by the pure live state of ``web/live.py``; the page's files are in ``web/static/``."""
