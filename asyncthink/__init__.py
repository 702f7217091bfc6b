"""asyncthink: asynchronous organizer-worker reasoning with language models.

The runtime library: the fork/join protocol, episode records and metrics, the
engines, prompts, the episode executor and the three reasoning modes.
"""

__version__ = "0.1.0"
