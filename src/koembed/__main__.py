from koembed.cli import app

app()
