"""Circuit claims: a circuit compared with its complement, with random circuits and with itself minus
each component, built on :func:`mitest.measure`."""
