from stages.app import app

app()
