"""The scoring server: gunicorn hosting a Flask app (see app.py for the routes)."""
