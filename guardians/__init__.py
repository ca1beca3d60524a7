"""dew guardians: people, queues, decisions, release and the audit trail.

Depends on `agents` (never the other way round): it starts and resumes runs through the agents
runtime and alone decides what is released.
"""
