"""``python -m asyncthink``: the same CLI as the ``asyncthink`` command (for ``accelerate launch -m``)."""

from asyncthink.cli import app

if __name__ == "__main__":
    app()
