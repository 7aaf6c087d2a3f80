from azurine.cli.main import app

app()
