"""HTTP: Host/Origin checks, login and users, request limits, the OpenAI-compatible server."""
