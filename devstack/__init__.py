"""Development tooling, apart from the runtime packages: Asterisk unpacked from Debian packages
and its instances (the engine and the carrier stand-in, :mod:`devstack.asterisk`), Kannel with
a fake SMSC (:mod:`devstack.kannel`), the signal simulator (:mod:`devstack.sim`) and the
commands that run the local stack (:mod:`devstack.commands`, ``make run``).

Production never imports this package: it runs its own Asterisk and Kannel (``docker/``).
"""
