"""Imported once by the math verifier's fork server (``start_method="forkserver"``).

Loading Math-Verify, sympy and the ANTLR LaTeX grammar takes about two seconds of
CPU; done here, every worker forked from the server starts with them loaded, a
worker that replaces one killed at its timeout included.
"""

from verifiers.math import _init_worker

_init_worker()
