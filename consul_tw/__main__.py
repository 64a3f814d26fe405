"""``python -m consul_tw`` is the ``consul-tw`` command."""

from consul_tw.cli.main import run

if __name__ == "__main__":
    run()
