"""Benchmark harness: process control (procs), relay load generator (loadgen), idle connections (idle).

Bench scripts put `<repo>/bench` on sys.path and `from lib import procs, loadgen, idle`.
"""
