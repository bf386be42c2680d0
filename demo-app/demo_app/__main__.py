"""`python -m demo_app` serves the API (see serve.py); the worker is `python -m demo_app.worker`."""

from demo_app.serve import main

main()
