"""Test helpers: a local OpenAI-compatible server, a fault-injecting proxy, subprocess workers."""
