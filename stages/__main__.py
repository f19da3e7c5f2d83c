"""`python -m stages <command>`: imports only the root table and that command's module (see stages/app.py)."""

from stages.app import app

app()
