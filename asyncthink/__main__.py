"""``python -m asyncthink``: the same CLI as the ``asyncthink`` command (for ``accelerate launch -m``)."""

from asyncthink.cli import run

if __name__ == "__main__":
    run()
