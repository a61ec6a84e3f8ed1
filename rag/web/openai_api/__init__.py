"""OpenAI's HTTP protocol over our library and models, served by ``rag serve``.

protocol.py (request and response shapes), errors.py (the error shape),
catalog.py (model ids), answers.py (one request answered), stops.py (``stop``);
rag/web/serve.py puts them behind routes.
"""
