"""Rigs and helpers shared by the tests (through the conftest.py fixtures) and the
benchmarks in bench/: a throwaway PostgreSQL cluster, the sample stack under its own
Compose project, network-namespace hosts with their own sshd and Docker engine, load
generators, release trees. Nothing here is a test, and no test module is imported here.
"""
