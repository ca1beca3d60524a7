"""dew agents: scenario spec and loader, compiler to LangGraph, LLM access and the run runtime.

This package knows nothing of queues, people or release. A run pauses at its approval gate and
the runtime hands the draft back to its caller (``guardians``), which alone decides what happens
next.
"""
