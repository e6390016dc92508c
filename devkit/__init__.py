"""The development kit: everything developers, demos, tests and load tests use, never the daemon.

The Nova Sonic emulator (``devkit.emulator``), the simulated carriers and load harness
(``devkit.simcall``, ``devkit.loadtest``), the demos, the local S3 server and the example
prompts, and fake stores. Its third-party dependencies (moto's server, matplotlib, trustme)
are the ``novavoice[devkit]`` extra, so a production install (``pip install novavoice``) is
the daemon alone; ``actors`` and ``sessions`` never import this package.
"""
