from hygie.cli.main import run

run()
