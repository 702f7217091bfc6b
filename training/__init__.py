"""Training: cold-start trace synthesis, format SFT with TRL, and GRPO over episodes."""
